#!/bin/sh
# Git daemon and PyPI mirror (devpi-server) for guests, on one host address, shared by
# reference count like the apt proxy in bridge.py.
#   sh -s -- acquire USER ADDRESS GIT_BASE_DIR PYPI(0|1) DEVPI_SPEC
#   sh -s -- release USER ADDRESS
# GIT_BASE_DIR empty: no git daemon. Daemons are stopped by the pid they wrote, checked
# against their command line, when the last user releases the address. A listening socket
# survives its address going away and coming back (a bridge deleted and re-created).
set -eu
action=$1 user=$2 address=$3
base=/run/benchbed/mirrors
state=$base/$address
venv=/var/lib/benchbed/devpi/venv
cache=/var/cache/benchbed/pypi/$address
git_port=9418 pypi_port=3141
mkdir -p "$base"
exec 9>>"$base/$address.lock"
flock 9

ours() {  # does the process in pid file $1 have argument $2 on its command line?
    [ -s "$1" ] || return 1
    read -r pid < "$1"
    [ -r "/proc/$pid/cmdline" ] && grep -qzxF -- "$2" "/proc/$pid/cmdline"
}

running() {
    [ -r "/proc/$1/status" ] && ! grep -q '^State:.*Z' "/proc/$1/status"
}

stop() {  # stop the process of pid file $1 if it is ours ($2 on its command line)
    if ours "$1" "$2"; then
        read -r pid < "$1"
        kill "$pid" 2>/dev/null || true
        i=0
        while running "$pid" && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
        if ours "$1" "$2"; then kill -9 "$pid" 2>/dev/null || true; fi
    fi
    rm -f "$1"
}

answers() {  # does TCP port $1 on the address accept a connection?
    timeout 2 bash -c "exec 3<>/dev/tcp/$address/$1" 2>/dev/null
}

wait_for_port() {  # $1 port, $2 name, $3 log, $4 seconds
    i=0
    while ! answers "$1"; do
        i=$((i + 1))
        if [ $i -gt $(($4 * 4)) ]; then
            echo "$2 did not answer on $address:$1 within $4 s: $(tail -n 5 "$3")" >&2
            exit 1
        fi
        sleep 0.25
    done
}

start_git() {  # $1 base path
    if ours "$state/git.pid" "--pid-file=$state/git.pid"; then
        grep -qzxF -- "--base-path=$1" "/proc/$(cat "$state/git.pid")/cmdline" || {
            echo "a git daemon on $address already serves another folder" \
                 "($(tr '\0' ' ' < "/proc/$(cat "$state/git.pid")/cmdline"))" >&2
            exit 1
        }
        return 0
    fi
    [ -d "$1" ] || { echo "git_mirror $1 is not a folder" >&2; exit 1; }
    rm -f "$state/git.pid"
    git daemon --base-path="$1" --export-all --listen="$address" --port=$git_port \
        --reuseaddr --detach --pid-file="$state/git.pid" </dev/null \
        >"$state/git.log" 2>&1 9>&- || { cat "$state/git.log" >&2; exit 1; }
    wait_for_port $git_port "git daemon" "$state/git.log" 30
}

install_devpi() {  # $1 pip requirement; a venv of its own, blind to the host's pip config
    [ -f "$venv/.complete" ] && return 0
    exec 8>>/var/lib/benchbed/devpi.lock
    flock 8
    if [ ! -f "$venv/.complete" ]; then
        rm -rf "$venv"
        python3 -m venv "$venv"
        PIP_CONFIG_FILE=/dev/null "$venv/bin/pip" install --isolated -q "$1" \
            >"$state/devpi-install.log" 2>&1 || { tail -n 5 "$state/devpi-install.log" >&2; exit 1; }
        : > "$venv/.complete"
    fi
    exec 8>&-
}

start_pypi() {  # $1 pip requirement of devpi-server
    if ours "$state/devpi.pid" "--serverdir=$cache"; then return 0; fi
    mkdir -p /var/lib/benchbed/devpi "$cache"
    install_devpi "$1"
    if [ ! -f "$cache/.nodeinfo" ]; then
        head -c 24 /dev/urandom | base64 > "$cache/.benchbed-root"
        chmod 600 "$cache/.benchbed-root"
        "$venv/bin/devpi-init" --serverdir="$cache" --root-passwd="$(cat "$cache/.benchbed-root")" \
            >"$state/devpi-init.log" 2>&1 || { tail -n 5 "$state/devpi-init.log" >&2; exit 1; }
    fi
    rm -f "$state/devpi.pid"
    setsid "$venv/bin/devpi-server" --serverdir="$cache" --host="$address" \
        --port=$pypi_port --request-timeout=60 </dev/null >"$state/devpi.log" 2>&1 9>&- &
    echo $! > "$state/devpi.pid"
    wait_for_port $pypi_port devpi-server "$state/devpi.log" 180
    [ -f "$cache/.benchbed-configured" ] || configure_pypi
}

configure_pypi() {  # ask PyPI for each project's page, never for the list of every name
    "$venv/bin/python3" - "http://$address:$pypi_port" "$cache/.benchbed-root" <<'EOF'
import base64, json, sys, urllib.request
url, secret = sys.argv[1], open(sys.argv[2]).read().strip()
def call(method, path, body, auth=None):
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if auth:
        headers["X-Devpi-Auth"] = base64.b64encode(f"root:{auth}".encode()).decode()
    request = urllib.request.Request(url + path, json.dumps(body).encode(), headers,
                                     method=method)
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)
token = call("POST", "/+login", {"user": "root", "password": secret})["result"]["password"]
call("PATCH", "/root/pypi", ["mirror_no_project_list=True"], token)
EOF
    : > "$cache/.benchbed-configured"
}

acquire() {
    git_dir=$1 pypi=$2 devpi_spec=$3
    mkdir -p "$state/users"
    : > "$state/users/$user"
    if [ -n "$git_dir" ]; then start_git "$git_dir"; fi
    if [ "$pypi" = 1 ]; then start_pypi "$devpi_spec"; fi
}

release() {
    rm -f "$state/users/$user"
    if [ -n "$(ls -A "$state/users" 2>/dev/null)" ]; then return 0; fi
    stop "$state/devpi.pid" "--serverdir=$cache"
    stop "$state/git.pid" "--pid-file=$state/git.pid"
    rm -rf "$state"
}

shift 3
"$action" "$@"
