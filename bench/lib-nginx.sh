# shellcheck shell=bash
# Shared by the fetch benchmarks: a throwaway nginx on 127.0.0.1 serving $1/www.
# Sourced, not run. Sets NGINX_PID; nginx_start DIR PORT [EXTRA_HTTP_DIRECTIVES], nginx_stop.

nginx_start() {
	_d=$1
	_port=$2
	_extra=${3:-}
	mkdir -p "$_d/www"
	cat >"$_d/nginx.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
pid $_d/nginx.pid;
error_log $_d/error.log;
worker_rlimit_nofile 4096;
events { worker_connections 1024; }
http {
	access_log $_d/access.log;
	client_body_temp_path $_d/t1;
	proxy_temp_path $_d/t2;
	fastcgi_temp_path $_d/t3;
	uwsgi_temp_path $_d/t4;
	scgi_temp_path $_d/t5;
	sendfile on;
	tcp_nopush on;
	$_extra
	server { listen 127.0.0.1:$_port; root $_d/www; }
}
CONF
	nginx -e "$_d/error.log" -p "$_d" -c "$_d/nginx.conf" &
	NGINX_PID=$!
	_i=0
	until curl -s -o /dev/null "http://127.0.0.1:$_port/"; do
		_i=$((_i + 1))
		if [ "$_i" -gt 100 ]; then
			echo "nginx did not start:" >&2
			cat "$_d/error.log" >&2
			exit 1
		fi
		sleep 0.1
	done
}

nginx_stop() {
	if [ -n "${NGINX_PID:-}" ]; then
		kill "$NGINX_PID" 2>/dev/null || true
		wait "$NGINX_PID" 2>/dev/null || true
		NGINX_PID=
	fi
}
