#!/usr/bin/env bash
# A configuration-only deploy (eb setenv) runs confighooks, not hooks: the same nginx limits step.
exec "$(dirname "$0")/../../hooks/prebuild/01_nginx_limits.sh" "$@"
