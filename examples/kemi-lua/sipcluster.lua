-- sipcluster: the routing logic of kamailio.cfg as a KEMI Lua script.
--
-- An EXAMPLE with a smaller contract than the shipped kamailio.cfg (the
-- product): README.md beside it says what is tested under it (the
-- hostile-traffic suites and test_kemi) and what is not (no LOCAL_* hooks).
--
-- kamailio.cfg loads it with -A WITH_KEMI_LUA (app_lua, cfgengine "lua"):
-- the same modules and parameters, this routing instead of the native
-- blocks (which the cfg then leaves out). KEMI_LUA_SCRIPT names the file
-- (default /etc/kamailio/sipcluster.lua). The cfg's defines (-A NAME=VALUE,
-- sipcluster-node.cfg, the #!trydef defaults) are read here through $def()
-- and $defn(), so one set of settings drives either script.
--
-- Event routes are callbacks: the pair-state event reaches
-- ksr_sipcluster_event() (modparam sipcluster event_callback), tcp:closed
-- ksr_tcpops_event(), HTTP ksr_xhttp_event().
--
-- A sipcluster function that refuses a request answers it itself and
-- returns 0; in the native cfg that ends the script, here the script must
-- exit.

local function defined(name)
	local v = KSR.pv.get("$def(" .. name .. ")")
	return v ~= nil
end

local function defn(name, fallback)
	if not defined(name) then
		return fallback
	end
	return KSR.pv.get("$defn(" .. name .. ")")
end

-- the settings, read once per process at the first message ($def()
-- needs a message to evaluate against: not at load time)
local SERVER_TIMEOUT, SERVER_INV_TIMEOUT, RETRY_AFTER
local MAX_MSG_SIZE, MAX_CALLID_LEN, TCP_MAX_PER_SOURCE
local HTTP_PORT, OVERLOAD_RATE, PIKE, TCP_SOURCE_LIMIT, DIALOG
local loaded = false

local function settings()
	if loaded then
		return
	end
	SERVER_TIMEOUT = defn("SERVER_TIMEOUT", 2000)
	SERVER_INV_TIMEOUT = defn("SERVER_INV_TIMEOUT", 120000)
	RETRY_AFTER = defn("RETRY_AFTER", 10)
	MAX_MSG_SIZE = defn("MAX_MSG_SIZE", 16384)
	MAX_CALLID_LEN = defn("MAX_CALLID_LEN", 256)
	TCP_MAX_PER_SOURCE = defn("TCP_MAX_PER_SOURCE", 32)
	HTTP_PORT = defn("HTTP_PORT", 9090)
	OVERLOAD_RATE = defn("OVERLOAD_RATE", nil)
	PIKE = not defined("NO_PIKE")
	TCP_SOURCE_LIMIT = not defined("NO_TCP_SOURCE_LIMIT")
	DIALOG = defined("WITH_DIALOG")
	loaded = true
end

local function relay()
	if KSR.tm.t_relay() < 0 then
		KSR.sl.sl_reply_error()
	end
	KSR.x.exit()
end

local function unavailable()
	KSR.hdr.append_to_reply("Retry-After: " .. RETRY_AFTER .. "\r\n")
	KSR.sl.sl_send_reply(503, "Service Unavailable: " ..
		(KSR.pv.gete("$sipcluster(why)") or ""))
	KSR.x.exit()
end

-- the first message on a TCP/TLS connection counts it for its source
local function tcp_source_limit()
	local si = KSR.pv.get("$si")
	local ckey = "c:" .. si .. ":" .. KSR.pv.get("$sp")
	if KSR.htable.sht_is_null("tcpsrc", ckey) < 0 then
		return
	end
	KSR.htable.sht_seti("tcpsrc", ckey, 1)
	KSR.tcpops.tcp_enable_closed_event()
	local nkey = "n:" .. si
	if KSR.htable.sht_is_null("tcpsrc", nkey) > 0 then
		KSR.htable.sht_seti("tcpsrc", nkey, 0)
	end
	if KSR.htable.sht_inc("tcpsrc", nkey) > TCP_MAX_PER_SOURCE then
		KSR.sipcluster.deny(503, "Too many connections from this address")
		KSR.tcpops.tcp_close_connection()
		KSR.x.exit()
	end
end

local function reqinit()
	-- bounds for what comes from outside the cluster (replication between
	-- proxies sends large KDMQ batches)
	if KSR.sipcluster.from_cluster() < 0 then
		if KSR.pv.geti("$ml") > MAX_MSG_SIZE then
			KSR.sipcluster.deny(513, "Message Too Large")
			KSR.x.exit()
		end
		local sbc = KSR.sipcluster.from_sbc() > 0
		if PIKE and not sbc and KSR.pike.pike_check_req() < 0 then
			-- a flood: no answer at all, but counted and logged
			KSR.sipcluster.flood_drop()
			KSR.x.exit()
		end
		local proto = KSR.pv.get("$proto")
		if TCP_SOURCE_LIMIT and not sbc
				and (proto == "tcp" or proto == "tls") then
			tcp_source_limit()
		end
	end
	if KSR.maxfwd.process_maxfwd(10) < 0 then
		KSR.sl.sl_send_reply(483, "Too Many Hops")
		KSR.x.exit()
	end
	if KSR.sanity.sanity_check(17895, 7) < 0 then
		KSR.x.exit()
	end
	if string.len(KSR.pv.get("$ci") or "") > MAX_CALLID_LEN then
		KSR.sipcluster.deny(400, "Call-ID too long")
		KSR.x.exit()
	end
end

local function to_endpoint()
	if KSR.registrar.lookup("location") < 0 then
		if KSR.sipcluster.synced() < 0 then
			-- just started: the binding may still be on its way
			KSR.hdr.append_to_reply("Retry-After: 1\r\n")
			KSR.sl.sl_send_reply(503,
				"Service Unavailable: registrations are being synchronised")
			KSR.x.exit()
		end
		KSR.sl.sl_send_reply(404, "Not Found")
		KSR.x.exit()
	end
	KSR.sipcluster.set_socket()
	if KSR.is_method_in("ISF") then -- INVITE, SUBSCRIBE, REFER (F)
		KSR.sipcluster.record_route()
	end
	relay()
end

local function withindlg(from_server)
	if KSR.is_ACK() then
		-- the ACK of a negative reply is tm's
		if KSR.tm.t_check_trans() == 0 then
			KSR.x.exit()
		end
	end
	if DIALOG and KSR.is_method_in("BIUEA") then -- BYE INVITE UPDATE PRACK(E) ACK
		KSR.dialog.dlg_manage()
	end
	local rc = KSR.sipcluster.dialog()
	if rc == 0 then
		KSR.x.exit() -- refused, answered
	elseif rc < 0 then
		KSR.sl.sl_send_reply(500, "Server Internal Error")
		KSR.x.exit()
	end
	if KSR.is_ACK() then
		KSR.tm.t_relay()
		KSR.x.exit()
	end
	if not from_server and KSR.sipcluster.from_proxy() < 0 then
		KSR.tm.t_set_fr(SERVER_INV_TIMEOUT, SERVER_TIMEOUT)
		KSR.tm.t_on_failure("ksr_dlg_failover")
	end
	relay()
end

function ksr_request_route()
	settings()
	reqinit()

	if KSR.is_KDMQ() then
		-- only the cluster's proxies, over TCP/TLS from their listen address
		if KSR.sipcluster.from_peer() < 0 then
			KSR.sipcluster.deny(403, "Not a cluster proxy (KDMQ over TCP/TLS only)")
			KSR.x.exit()
		end
		KSR.dmq.handle_message()
		KSR.x.exit()
	end

	local from_server = KSR.sipcluster.seen_request() > 0
	local xgr = false
	if KSR.hdr.is_present("X-Genesys-Route") > 0 then
		xgr = KSR.sipcluster.x_genesys_route() > 0
	end

	if KSR.is_OPTIONS() and KSR.is_myself_ruri() and KSR.pv.is_null("$rU") then
		KSR.sl.sl_send_reply(200, "Keepalive")
		KSR.x.exit()
	end

	if KSR.is_CANCEL() then
		if KSR.tm.t_check_trans() > 0 then
			relay()
		end
		KSR.x.exit()
	end

	if KSR.siputils.has_totag() > 0 then
		withindlg(from_server)
	end
	if KSR.is_ACK() then
		KSR.x.exit()
	end

	if KSR.tmx.t_precheck_trans() > 0 then
		KSR.tm.t_check_trans()
		KSR.x.exit()
	end
	if KSR.tm.t_check_trans() == 0 then
		KSR.x.exit()
	end

	-- the Route set of an initial request
	if KSR.hdr.is_present("Route") > 0 then
		local rc = KSR.sipcluster.loose_route()
		if rc == 0 then
			KSR.x.exit()
		elseif rc == 1 then
			if KSR.is_method_in("ISF") then
				KSR.sipcluster.record_route()
			end
			relay()
		end
	end

	if KSR.is_REGISTER() then
		local rc = KSR.sipcluster.register()
		if rc == 0 then
			KSR.x.exit()
		elseif rc < 0 then
			unavailable()
		end
		KSR.tm.t_set_fr(SERVER_INV_TIMEOUT, SERVER_TIMEOUT)
		KSR.tm.t_on_failure("ksr_failover")
		relay()
	end

	if from_server then
		if xgr then
			if KSR.is_method_in("ISF") then
				KSR.sipcluster.record_route()
			end
			relay()
		end
		to_endpoint()
	end

	-- new calls and out-of-dialog requests from endpoints: only ever to
	-- the active member of one of the cluster's SIP Server pairs
	if OVERLOAD_RATE and KSR.is_INVITE() then
		if KSR.pipelimit.pl_check_limit("sipcluster-invites", "TAILDROP",
				OVERLOAD_RATE) < 0 then
			KSR.hdr.append_to_reply("Retry-After: " .. RETRY_AFTER .. "\r\n")
			KSR.sl.sl_send_reply(503, "Overload: too many new calls")
			KSR.x.exit()
		end
	end
	local rc = KSR.sipcluster.route()
	if rc == 0 then
		KSR.x.exit()
	elseif rc < 0 then
		unavailable()
	end
	if DIALOG and KSR.is_INVITE() then
		KSR.dialog.dlg_manage()
	end
	KSR.tm.t_set_fr(SERVER_INV_TIMEOUT, SERVER_TIMEOUT)
	KSR.tm.t_on_branch("ksr_branch")
	KSR.tm.t_on_failure("ksr_failover")
	relay()
end

-- per branch: Record-Route with the branch's pair (;scp=) and the flow
function ksr_branch()
	settings()
	if KSR.is_method_in("ISF") then
		KSR.sipcluster.record_route()
	end
end

local function should_fail_over()
	return KSR.tm.t_check_status("503") > 0
		or (KSR.tm.t_branch_timeout() > 0 and KSR.tm.t_branch_replied() < 0)
end

-- the member timed out or answered 503: its partner, then the next pair
function ksr_failover()
	settings()
	if KSR.tm.t_is_canceled() > 0 then
		return
	end
	if should_fail_over() then
		if KSR.sipcluster.next() > 0 then
			KSR.tm.t_on_branch("ksr_branch")
			KSR.tm.t_on_failure("ksr_failover")
			KSR.tm.t_relay()
			return
		end
		KSR.hdr.append_to_reply("Retry-After: " .. RETRY_AFTER .. "\r\n")
		KSR.tm.t_reply(503, "Service Unavailable: " ..
			(KSR.pv.gete("$sipcluster(why)") or ""))
	end
end

function ksr_dlg_failover()
	settings()
	if KSR.tm.t_is_canceled() > 0 then
		return
	end
	if should_fail_over() and KSR.sipcluster.next() > 0 then
		KSR.tm.t_on_failure("ksr_dlg_failover")
		KSR.tm.t_relay()
	end
end

-- every reply, before tm sees it: only from where its branch went
function ksr_reply_route()
	if KSR.sipcluster.check_reply() < 0 then
		KSR.x.drop()
	end
end

-- a reply that matches no transaction (tm on_sl_reply): dropped
function ksr_stray_reply()
	KSR.x.drop()
end

-- the last check before a request leaves
function ksr_onsend_route()
	if KSR.sipcluster.check_relay() < 0 then
		KSR.x.drop()
	end
end

-- pair transitions (modparam sipcluster event_callback)
function ksr_sipcluster_event(evname)
	KSR.info("pair-state (KEMI " .. evname .. "): pair=" ..
		(KSR.pv.gete("$sipcluster(pair)") or "") .. " state=" ..
		(KSR.pv.gete("$sipcluster(state)") or "") .. " active=" ..
		(KSR.pv.gete("$sipcluster(active)") or "") .. " reason=" ..
		(KSR.pv.gete("$sipcluster(reason)") or "") .. "\n")
end

-- tcp:closed, tcp:timeout, tcp:reset (modparam tcpops event_callback):
-- the connection no longer counts for its source
function ksr_tcpops_event(evname)
	settings()
	local si = KSR.pv.get("$si")
	local ckey = "c:" .. si .. ":" .. KSR.pv.get("$sp")
	if KSR.htable.sht_is_null("tcpsrc", ckey) < 0 then
		KSR.htable.sht_dec("tcpsrc", "n:" .. si)
		KSR.htable.sht_rm("tcpsrc", ckey)
	end
end

-- the per-pair and per-server series, handed out one at a time by the
-- module and set with xhttp_prom's own functions
local function prom_series()
	local P = KSR.xhttp_prom
	while KSR.sipcluster.prom_next() > 0 do
		local m = KSR.pv.get("$sipcluster(prom_metric)")
		local v = KSR.pv.get("$sipcluster(prom_value)")
		local a = KSR.pv.get("$sipcluster(prom_l1)")
		local b = KSR.pv.get("$sipcluster(prom_l2)")
		local gauge = KSR.pv.get("$sipcluster(prom_kind)") == "gauge"
		local reset = KSR.pv.get("$sipcluster(prom_reset)") == 1
		if KSR.pv.get("$sipcluster(prom_labels)") == 2 then
			if gauge then
				P.gauge_set_l2(m, tostring(v), a, b)
			else
				if reset then P.counter_reset_l2(m, a, b) end
				P.counter_inc_l2(m, v, a, b)
			end
		else
			local c = KSR.pv.get("$sipcluster(prom_l3)")
			if gauge then
				P.gauge_set_l3(m, tostring(v), a, b, c)
			else
				if reset then P.counter_reset_l3(m, a, b, c) end
				P.counter_inc_l3(m, v, a, b, c)
			end
		end
	end
end

-- HTTP on HTTP_PORT only: /metrics for Prometheus, /RPC for JSON-RPC
-- (modparam xhttp event_callback)
function ksr_xhttp_event(evname)
	settings()
	if KSR.pv.geti("$Rp") ~= HTTP_PORT then
		KSR.xhttp.xhttp_reply(403, "Forbidden", "", "")
		return
	end
	local hu = KSR.pv.get("$hu") or ""
	if string.find(hu, "^/metrics") then
		prom_series()
		KSR.xhttp_prom.dispatch()
		return
	end
	if string.find(hu, "^/RPC") then
		-- management is not on the signalling path: this host only
		local si = KSR.pv.get("$si") or ""
		if si ~= "127.0.0.1" and si ~= "::1" then
			KSR.xhttp.xhttp_reply(403, "Forbidden", "text/plain",
				"JSON-RPC: not from this address\n")
			return
		end
		KSR.jsonrpcs.dispatch()
		return
	end
	KSR.xhttp.xhttp_reply(404, "Not Found", "text/plain", "/metrics or /RPC\n")
end
