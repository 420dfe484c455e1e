#!/usr/bin/env bash
# The NixOS server module's tmpfiles rules, applied by this machine's systemd-tmpfiles to an empty
# root (--root, nothing outside it is touched): the netrc must exist, empty, 0600, in a 0700
# directory, reachable through the /var/lib/nix-cache-login link the unit's StateDirectory uses;
# and a second run (the next boot), after systemd handed the directory to the unit's dynamic user
# and the unit wrote a token, must leave owner, mode and content alone.
#
#   bash nix/tests/tmpfiles-check.sh LIB_EXPR      (LIB_EXPR e.g. 'import /tmp/nixpkgs.lib/lib')
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

lib_expr="$1"
if ! command -v systemd-tmpfiles >/dev/null 2>&1; then
  echo "FAIL systemd-tmpfiles not found; install it (Debian: apt-get install -y --no-install-recommends systemd)"
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root="$work/root"
mkdir -p "$root/var/lib"

nix-instantiate --readonly-mode --eval --strict --arg lib "$lib_expr" --expr '
  { lib }:
  let
    stubs = import ./nix/tests/stubs.nix { inherit lib; };
    config = (lib.evalModules {
      modules = [
        stubs.nixos
        ./nix/modules/nixos-server.nix
        {
          services.nix-cache-login-server = {
            enable = true;
            clientSecretFile = "/run/secrets/s";
            settings = { issuer = "https://sso.example.com/realms/eng"; client_id = "c"; cache_host = "cache"; };
          };
        }
      ];
      specialArgs.pkgs = stubs.pkgs.linux;
    }).config;
  in
  lib.concatMapStrings (r: r + "\n") config.systemd.tmpfiles.rules
' | sed -e 's/^"//' -e 's/"$//' -e 's/\\n/\n/g' >"$work/rules.conf"

failed=0
expect() {
  local what="$1" got="$2" want="$3"
  if [ "$got" = "$want" ]; then
    echo "ok   tmpfiles: $what"
  else
    echo "FAIL tmpfiles: $what"
    echo "       got:  $got"
    echo "       want: $want"
    failed=1
  fi
}

dir="$root/var/lib/private/nix-cache-login"
systemd-tmpfiles --create --root="$root" "$work/rules.conf"
expect "netrc created empty, 0600, owned by root until the unit starts" \
  "$(stat -c '%a %u %s' "$dir/netrc")" "600 0 0"
expect "its directory 0700" "$(stat -c '%a' "$dir")" "700"
expect "/var/lib/private 0700" "$(stat -c '%a' "$root/var/lib/private")" "700"
expect "/var/lib/nix-cache-login links to it, as systemd links a dynamic user's StateDirectory" \
  "$(readlink "$root/var/lib/nix-cache-login")" "private/nix-cache-login"
expect "the netrc-file path resolves" "$(test -f "$root/var/lib/nix-cache-login/netrc" && echo yes)" "yes"

# What systemd does when the unit starts (chown to the dynamic user), then a token is written.
chown -R 61234:61234 "$dir"
printf 'machine cache\nlogin x\npassword y\n' >"$dir/netrc"
systemd-tmpfiles --create --root="$root" "$work/rules.conf"
expect "next boot: owner, mode and content kept" \
  "$(stat -c '%a %u %s' "$dir/netrc") $(stat -c '%a %u' "$dir")" "600 61234 33 700 61234"

exit "$failed"
