#!/usr/bin/env bash
# Nix checks with nothing but Nix >= 2.8 (Debian's nix-bin):
#
#   bash nix/ci-check.sh                     what needs no nixpkgs: parse every .nix file, check
#                                            the flake's shape (npm test runs this)
#   npm run check:nix -- --lib PATH --home-manager PATH --nix-darwin PATH
#                                            ... and evaluate the modules, the package expression
#                                            and the flake's outputs with the real module system,
#                                            using the nixpkgs `lib` at PATH (a nixpkgs checkout
#                                            or the nix-community/nixpkgs.lib mirror; PATH or
#                                            PATH/lib), and the Home Manager and nix-darwin
#                                            modules inside those projects' own systemd/launchd
#                                            code (checkouts). Fails when a path is missing.
#                                            Also evaluates the VM tests with stand-ins and lints
#                                            their scripts (pyflakes), and runs every generated
#                                            config through the built CLI (needs node, dist/).
#
# NIXPKGS_LIB, HOME_MANAGER and NIX_DARWIN work like the three options (--with-lib is the old
# spelling of --lib). The full checks (package build, real NixOS evaluation, VM tests) need
# nixpkgs itself: `nix flake check` on a machine that has it.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

lib_path="${NIXPKGS_LIB:-}"
modules=0
while [ $# -gt 0 ]; do
  case "$1" in
    --modules)
      modules=1
      shift
      ;;
    --lib | --with-lib)
      [ $# -ge 2 ] || { echo "ci-check: $1 needs a path" >&2; exit 2; }
      lib_path="$2"
      modules=1
      shift 2
      ;;
    --lib=* | --with-lib=*)
      lib_path="${1#*=}"
      modules=1
      shift
      ;;
    --home-manager | --nix-darwin)
      [ $# -ge 2 ] || { echo "ci-check: $1 needs a path" >&2; exit 2; }
      if [ "$1" = --home-manager ]; then HOME_MANAGER="$2"; else NIX_DARWIN="$2"; fi
      modules=1
      shift 2
      ;;
    -h | --help)
      sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "ci-check: unknown argument: $1 (see --help)" >&2
      exit 2
      ;;
  esac
done

if [ "$modules" -eq 1 ] && { [ -z "$lib_path" ] || [ -z "${HOME_MANAGER:-}" ] || [ -z "${NIX_DARWIN:-}" ]; }; then
  cat >&2 <<'EOF'
ci-check: the module checks need checkouts of nixpkgs' lib, Home Manager and nix-darwin:
--lib PATH --home-manager PATH --nix-darwin PATH, e.g.
  git clone --depth 1 https://github.com/nix-community/nixpkgs.lib /tmp/nixpkgs.lib
  git clone --depth 1 https://github.com/nix-community/home-manager /tmp/home-manager
  git clone --depth 1 https://github.com/nix-darwin/nix-darwin /tmp/nix-darwin
  npm run check:nix -- --lib /tmp/nixpkgs.lib --home-manager /tmp/home-manager --nix-darwin /tmp/nix-darwin
EOF
  exit 2
fi

if ! command -v nix-instantiate >/dev/null 2>&1; then
  echo "ci-check: nix-instantiate not found; install Nix (Debian: apt-get install -y --no-install-recommends nix-bin)" >&2
  exit 1
fi

# Evaluation only: no builds, no writes to the store, and no warning about a missing nixbld group
# on machines where Nix is installed but unused.
export NIX_CONFIG="build-users-group =
experimental-features ="
nix_eval() { nix-instantiate --readonly-mode --eval --strict "$@"; }
# nix-instantiate prints strings as Nix literals; show them as text.
print_string() { sed -e 's/^"//' -e 's/"$//' -e 's/\\n/\n/g' -e 's/\\"/"/g' -e 's/\\\$/$/g'; }
# A check's verdict: ok with the string it evaluated to, or FAIL with its output indented ($out both).
pass() { echo "ok   $(echo "$out" | print_string)"; }
fail() {
  echo "FAIL $1"
  echo "$out" | sed 's/^/       /'
  failed=1
}
# The summary line, and the exit status.
finish() {
  if [ "$failed" -ne 0 ]; then
    echo "== nix/ci-check.sh: FAILED"
  else
    echo "== nix/ci-check.sh: all checks passed"
  fi
  exit "$failed"
}

echo "== $(nix-instantiate --version)"
failed=0

list_nix_files() {
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -z --cached --others --exclude-standard -- '*.nix'
  else
    find . -name '*.nix' -not -path './node_modules/*' -print0
  fi
}

echo "== parse every .nix file"
count=0
while IFS= read -r -d '' file; do
  count=$((count + 1))
  if ! out=$(nix-instantiate --parse "$file" 2>&1 >/dev/null); then
    fail "$file"
  fi
done < <(list_nix_files)
echo "parsed $count files"
if [ "$count" -eq 0 ]; then
  echo "FAIL no .nix files found"
  failed=1
fi

echo "== flake shape"
if out=$(nix_eval --expr '
  let
    flake = import ./flake.nix;
    args = builtins.functionArgs flake.outputs;
  in
    assert builtins.isString flake.description;
    assert builtins.attrNames flake.inputs == [ "nixpkgs" ];
    assert builtins.attrNames args == [ "nixpkgs" "self" ];
    let
      lock = builtins.fromJSON (builtins.readFile ./flake.lock);
      locked = lock.nodes.nixpkgs.locked;
      original = lock.nodes.nixpkgs.original;
    in
    # The lock matches flake.nix (else Nix would re-lock to whatever is newest).
    assert lock.nodes.${lock.root}.inputs == { nixpkgs = "nixpkgs"; };
    assert flake.inputs.nixpkgs.url == "github:${original.owner}/${original.repo}/${original.ref}";
    assert builtins.stringLength locked.rev == 40 && builtins.isInt locked.lastModified;
    assert builtins.substring 0 7 locked.narHash == "sha256-";
    "inputs: nixpkgs (${flake.inputs.nixpkgs.url}, locked at ${locked.rev}); outputs take self and nixpkgs only"
' 2>&1); then
  pass
else
  fail "flake.nix"
fi

echo "== flake output names (nixpkgs replaced by a stand-in made of builtins)"
if out=$(nix_eval --expr '
  let
    systems = [ "x86_64-linux" "aarch64-linux" "x86_64-darwin" "aarch64-darwin" ];
    # Just enough of nixpkgs for the names of the outputs, which depend on no package: anything
    # that would need a package throws if it is evaluated.
    lib = {
      genAttrs = names: f: builtins.listToAttrs (map (n: { name = n; value = f n; }) names);
      optionalAttrs = cond: attrs: if cond then attrs else { };
      getExe = _: throw "not evaluated here";
      nixosSystem = _: throw "not evaluated here";
    };
    isLinux = system: builtins.match ".*-linux" system != null;
    nixpkgs = {
      inherit lib;
      legacyPackages = lib.genAttrs systems (system: {
        inherit lib;
        stdenv.hostPlatform = { inherit system; isLinux = isLinux system; };
        callPackage = _: _: throw "not evaluated here";
      });
    };
    flake = (import ./flake.nix).outputs { self = flake; inherit nixpkgs; };
    want = {
      packages = _: [ "default" "nix-cache-login" ];
      apps = _: [ "default" ];
      devShells = _: [ "default" ];
      formatter = null;
      checks = system: [ "module-checks" "package" ] ++ (if isLinux system then [ "vm-server" "vm-server-key" "vm-workstation" ] else [ ]);
    };
    missing = builtins.concatLists (map (output:
      builtins.concatLists (map (system:
        if !(flake.${output} ? ${system}) then [ "${output}.${system}" ]
        else if want.${output} == null then [ ]
        else map (n: "${output}.${system}.${n}")
          (builtins.filter (n: !(flake.${output}.${system} ? ${n})) (want.${output} system))
      ) systems)
    ) (builtins.attrNames want));
    modules = [ "nixosModules" "homeManagerModules" "homeModules" "darwinModules" ];
    badModules = builtins.filter (m: !(builtins.isPath (flake.${m}.default or null))) modules;
  in
    if missing ++ badModules != [ ] then throw "missing outputs: ${toString (missing ++ badModules)}"
    else if !(builtins.isFunction flake.overlays.default) then throw "overlays.default is not a function"
    else "packages, apps, devShells, formatter, checks for ${toString (builtins.length systems)} systems; overlay; modules"
' 2>&1); then
  pass
else
  fail "flake outputs"
fi

if [ "$modules" -eq 0 ]; then
  finish
fi

if [ -f "$lib_path/lib/default.nix" ]; then
  lib_path="$lib_path/lib"
fi
if [ ! -f "$lib_path/default.nix" ] || [ ! -f "$lib_path/modules.nix" ]; then
  cat >&2 <<EOF
==============================================================================
 ERROR: no nixpkgs lib at '$lib_path' (expected default.nix and modules.nix
 there or in its lib/ directory). The module checks did NOT run.
==============================================================================
EOF
  exit 1
fi
lib_path=$(cd "$lib_path" && pwd)
lib_expr="import $lib_path"
echo "== nixpkgs lib: $lib_path ($(nix_eval --expr "($lib_expr).version" 2>/dev/null | tr -d '"' || echo 'unknown version'))"

run_report() {
  local title="$1" file="$2" out
  echo "== $title"
  if out=$(nix_eval "$file" --arg lib "$lib_expr" -A report 2>&1); then
    echo "$out" | print_string
    if [ "$(nix_eval "$file" --arg lib "$lib_expr" -A ok)" != "true" ]; then
      failed=1
    fi
  else
    fail "evaluating $file"
  fi
}

run_report "module checks (lib.evalModules; NixOS, Home Manager, nix-darwin stand-ins)" nix/tests/module-checks.nix
run_report "package expression checks" nix/tests/package-checks.nix

echo "== error messages (nix/tests/error-messages.nix: each case must fail with its text)"
for case in $(nix_eval --arg lib "$lib_expr" --expr '{ lib }@a: builtins.concatStringsSep " " (builtins.attrNames (import ./nix/tests/error-messages.nix a).cases)' | tr -d '"'); do
  want=$(nix_eval nix/tests/error-messages.nix --arg lib "$lib_expr" -A "cases.$case.want" | print_string)
  if out=$(nix_eval nix/tests/error-messages.nix --arg lib "$lib_expr" -A "cases.$case.value" 2>&1); then
    echo "FAIL $case: evaluated to $out"; failed=1
  elif [[ "$out" != *"$want"* ]]; then
    fail "$case"
  else
    echo "ok   $case: ...$want..."
  fi
done

echo "== NixOS server tmpfiles rules, applied by systemd-tmpfiles --root"
bash nix/tests/tmpfiles-check.sh "$lib_expr" || failed=1

# The modules inside Home Manager's and nix-darwin's own code (both paths are required above).
{
  echo "== Home Manager and nix-darwin modules from $HOME_MANAGER and $NIX_DARWIN"
  out=$(nix_eval nix/tests/real-modules.nix --arg lib "$lib_expr" --arg homeManager "$(cd "$HOME_MANAGER" && pwd)" \
    --arg nixDarwin "$(cd "$NIX_DARWIN" && pwd)" -A report 2>&1) || failed=1
  echo "$out" | print_string
  [[ "$out" == *"checks passed"* && "$out" != *"FAIL"* ]] || failed=1
}

# The VM tests cannot run without nixpkgs and VMs; what can be checked without them is.
echo "== NixOS VM tests, evaluated with stand-ins (nix/tests/vm-eval.nix), their scripts through pyflakes"
run_report "NixOS VM tests: machines under test" nix/tests/vm-eval.nix
pyflakes=""
for py in python3 /usr/bin/python3; do
  if command -v "$py" >/dev/null 2>&1 && "$py" -m pyflakes --version >/dev/null 2>&1; then
    pyflakes="$py"
    break
  fi
done
if [ -z "$pyflakes" ]; then
  echo "FAIL pyflakes not found: the NixOS test driver lints test scripts with it (Debian: apt-get install -y --no-install-recommends python3-pyflakes)"
  failed=1
else
  scripts=$(mktemp -d)
  if out=$(nix-instantiate --readonly-mode --eval --strict --json --arg lib "$lib_expr" nix/tests/vm-eval.nix -A testScripts 2>&1 >"$scripts/all.json"); then
    # One file per test, and the names the driver defines: its machines and its functions.
    while IFS=$'\t' read -r name builtins; do
      if out=$(PYFLAKES_BUILTINS="$builtins" "$pyflakes" -m pyflakes "$scripts/$name.py" 2>&1); then
        echo "ok   $name: the test script parses, pyflakes finds nothing"
      else
        fail "$name: pyflakes on its test script"
      fi
    done < <("$pyflakes" -c '
import json, sys
d = sys.argv[1]
for t in json.load(open(d + "/all.json")):
    open(d + "/" + t["name"] + ".py", "w").write(t["testScript"])
    names = t["nodes"] + ["start_all", "subtest", "machines", "driver", "log", "retry", "join_all", "serial_stdout_on", "serial_stdout_off", "polling_condition", "Machine"]
    print(t["name"] + "\t" + ",".join(names))
' "$scripts")
  else
    fail "rendering the VM test scripts"
  fi
  rm -rf "$scripts"
fi

# What the modules generate must also pass the CLI's own rules (src/config/rules.ts), which the
# module checks above only mirror: every config value they made, through the built CLI.
echo "== every generated config, through the built CLI's validation (scripts/check-module-configs.ts)"
if ! command -v node >/dev/null 2>&1; then
  echo "FAIL node not found: the CLI's validation needs Node.js (see package.json engines)"
  failed=1
elif [ ! -f dist/nix-cache-login.cjs ] || [ ! -d node_modules/tsx ]; then
  echo "FAIL dist/nix-cache-login.cjs or node_modules missing: run \`npm ci && npm run build\` (npm run check:nix builds first)"
  failed=1
else
  configs=$(mktemp)
  if out=$(nix-instantiate --readonly-mode --eval --strict --json --arg lib "$lib_expr" \
    --arg homeManager "$(cd "$HOME_MANAGER" && pwd)" --arg nixDarwin "$(cd "$NIX_DARWIN" && pwd)" --expr '
    { lib, homeManager, nixDarwin }:
    (import ./nix/tests/module-checks.nix { inherit lib; }).cliConfigs
    ++ (import ./nix/tests/real-modules.nix { inherit lib homeManager nixDarwin; }).cliConfigs
    ++ (import ./nix/tests/vm-eval.nix { inherit lib; }).cliConfigs
  ' 2>&1 >"$configs"); then
    node --import tsx scripts/check-module-configs.ts "$configs" || failed=1
  else
    fail "collecting the generated configs"
  fi
  rm -f "$configs"
fi

echo "== flake outputs for every system"
if out=$(nix_eval --arg lib "$lib_expr" --expr '
  { lib }:
  let
    systems = [ "x86_64-linux" "aarch64-linux" "x86_64-darwin" "aarch64-darwin" ];
    # A stand-in nixpkgs: enough for the output names, which do not depend on packages.
    nixpkgs = {
      inherit lib;
      legacyPackages = lib.genAttrs systems (system: {
        inherit lib;
        stdenv.hostPlatform = {
          inherit system;
          isLinux = lib.hasSuffix "-linux" system;
        };
      });
    };
    flake = (import ./flake.nix).outputs { self = flake; inherit nixpkgs; };
    perSystem = {
      packages = [ "default" "nix-cache-login" ];
      apps = [ "default" ];
      devShells = [ "default" ];
      checks = [ "module-checks" "package" ];
    };
    missing = lib.concatLists (lib.mapAttrsToList (output: names:
      lib.concatMap (system:
        let have = builtins.attrNames (flake.${output}.${system} or { }); in
        map (n: "${output}.${system}.${n}") (lib.filter (n: !(lib.elem n have)) names)
      ) systems) perSystem)
      ++ map (s: "formatter.${s}") (lib.filter (s: !(flake.formatter ? ${s})) systems)
      ++ map (s: "checks.${s}.vm-server/vm-server-key/vm-workstation") (lib.filter (s:
        lib.hasSuffix "-linux" s && !(flake.checks.${s} ? vm-server && flake.checks.${s} ? vm-server-key && flake.checks.${s} ? vm-workstation)) systems);
    modules = {
      "nixosModules.default" = flake.nixosModules.default;
      "nixosModules.server" = flake.nixosModules.server;
      "homeManagerModules.default" = flake.homeManagerModules.default;
      "homeModules.default" = flake.homeModules.default;
      "darwinModules.default" = flake.darwinModules.default;
    };
    badModules = lib.attrNames (lib.filterAttrs (_: m: !(builtins.isPath m && builtins.pathExists m)) modules);
  in
    assert lib.isFunction flake.overlays.default;
    if missing ++ badModules == [ ] then
      "packages, apps, devShells, formatter, checks for ${toString (lib.length systems)} systems; overlay; ${toString (lib.length (lib.attrNames modules))} modules"
    else throw "missing or broken outputs: ${toString (missing ++ badModules)}"
' 2>&1); then
  pass
else
  fail "flake outputs"
fi

finish
