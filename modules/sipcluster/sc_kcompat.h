/*
 * sipcluster: what the module relies on beyond the APIs of other Kamailio
 * modules, checked at compile time for each Kamailio version it supports.
 *
 * The module builds unchanged against Kamailio 5.6 (Debian 12) and 6.0
 * (Debian 13): the core, tm, sl, rr, usrloc, registrar, dmq and dialog
 * APIs it binds are the same in both. Two pieces of the registration sync
 * (sc_syncd.c) go below an API, because none offers them:
 *   - usrloc has no iterator over a domain's records with their versions
 *     (get_all_ucontacts() drops last_modified, cseq and callid, which
 *     the digest compares): the sync walks udomain_t's hash table, each
 *     slot under usrloc's own record lock (rec_lock_get), copying out and
 *     never calling usrloc with the lock held;
 *   - a binding that must not be broadcast again is handed to dmq_usrloc
 *     as its own DMQ peer ("usrloc", its JSON "action" 1 = DMQ_UPDATE,
 *     "multi" bulk form), the path by which dmq_usrloc applies a peer's
 *     update without replicating it once more.
 * Both were read in the sources of 5.6.3 and 6.0.1 and are identical
 * there. Any other Kamailio version stops the build here, so nobody runs
 * the sync on a layout nobody checked: read usrloc's udomain.h/hslot.h and
 * dmq_usrloc's usrloc_sync.c of that version, then extend the range.
 */

#ifndef _SC_KCOMPAT_H_
#define _SC_KCOMPAT_H_

#ifndef VERSIONVAL
#error "VERSIONVAL is not defined: build against a configured Kamailio tree (make deps)"
#endif

/* 5.6.x and 6.0.x */
#if !((VERSIONVAL >= 5006000 && VERSIONVAL < 5007000) \
		|| (VERSIONVAL >= 6000000 && VERSIONVAL < 6001000))
#error "sipcluster's registration sync was checked against Kamailio 5.6 and 6.0 only (see sc_kcompat.h)"
#endif

/* the layout the sync walks */
#define SC_UL_SLOTS(d) ((d)->size)
#define SC_UL_SLOT_FIRST(d, i) ((d)->table[(i)].first)
#define SC_UL_SLOT_LOCK(d, i) rec_lock_get(&(d)->table[(i)].rlock)
#define SC_UL_SLOT_UNLOCK(d, i) rec_lock_release(&(d)->table[(i)].rlock)

/* dmq_usrloc's DMQ peer and its DMQ_UPDATE action */
#define SC_DMQ_UL_PEER "usrloc"
#define SC_DMQ_UL_UPDATE 1

#endif
