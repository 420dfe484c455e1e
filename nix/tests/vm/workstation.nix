# NixOS VM test for the workstation module: alice signs in once (browser flow, driven by a
# scripted browser), then the per-user timer alone keeps her token fresh across several
# access-token lifetimes (and, with token_storage left at auto, the timer's run reaches the
# session bus and secret-tool, finds no Secret Service, and keeps the token in the state file);
# bob, who never signed in, gets no failed unit.
# Run: nix build .#checks.x86_64-linux.vm-workstation
{ pkgs, lib, ... }:

let
  t = import ./common.nix { inherit pkgs lib; };
  netrc = "/home/${t.user.name}/.config/nix/netrc";
in
{
  name = "nix-cache-login-workstation";

  nodes = {
    keycloak = t.keycloakNode;
    cache = t.cacheNode;

    workstation = {
      imports = [
        ../../modules/nixos-workstation.nix
        t.trustTestCa
      ];

      services.nix-cache-login = {
        enable = true;
        settings = {
          inherit (t) issuer;
          client_id = "nix-cache";
          cache_host = "cache";
          # No cache_url: the test cache speaks plain http, which the CLI refuses for a cache URL
          # that is not on loopback (only `doctor` would use it).
        };
        # The realm's access tokens live 60 s: refresh when less than 40 s are left, check
        # every 30 s (the shortest interval the module takes).
        interval = "30s";
        randomizedDelay = "0s";
        minValid = "40s";
      };

      # Lingering starts the users' systemd instances at boot, without a login.
      users.users.${t.user.name} = {
        isNormalUser = true;
        linger = true;
      };
      users.users.bob = {
        isNormalUser = true;
        linger = true;
      };

      # For the interactive `login` (the user unit sets this itself).
      environment.variables.NODE_EXTRA_CA_CERTS = "/etc/ssl/certs/ca-certificates.crt";
    };
  };

  testScript = ''
    import json

    ${t.startKeycloakAndCache}

    workstation.start()
    workstation.wait_for_unit("multi-user.target")
    # Lingering starts each user's systemd instance, named after the uid NixOS gave the user.
    for user in ["${t.user.name}", "bob"]:
        uid = workstation.succeed(f"id -u {user}").strip()
        workstation.wait_for_unit(f"user@{uid}.service")

    def user_systemctl(user, args):
        return workstation.succeed(
            f"su - {user} -c 'XDG_RUNTIME_DIR=/run/user/$(id -u) systemctl --user {args}'"
        ).strip()

    def unit_property(user, prop):
        return user_systemctl(user, f"show -p {prop} --value nix-cache-login.service")

    with subtest("the timer is active for every user"):
        for user in ["${t.user.name}", "bob"]:
            workstation.wait_until_succeeds(
                f"su - {user} -c 'XDG_RUNTIME_DIR=/run/user/$(id -u) systemctl --user is-active nix-cache-login.timer'"
            )

    with subtest("before signing in, the unit is skipped, not failed"):
        # ConditionResult is "no" also for a unit that never ran: wait until the timer has
        # started it, which sets ConditionTimestamp, and then require that its condition failed
        # and that it never executed its command.
        workstation.wait_until_succeeds(
            "test \"$(su - bob -c 'XDG_RUNTIME_DIR=/run/user/$(id -u) systemctl --user show -p ConditionTimestampMonotonic --value nix-cache-login.service')\" -gt 0",
            timeout=90,
        )
        assert unit_property("bob", "ConditionResult") == "no"
        assert unit_property("bob", "ExecMainStartTimestampMonotonic") == "0"
        assert unit_property("bob", "ActiveState") != "failed"

    with subtest("${t.user.name} signs in with the browser flow"):
        workstation.succeed(
            "su - ${t.user.name} -c 'nix-cache-login login --browser-command ${lib.getExe t.browser}'"
        )
        workstation.succeed("su - ${t.user.name} -c 'nix-cache-login status'")
        workstation.succeed("grep -qE '^machine cache( |$)' ${netrc}")
        workstation.succeed("curl -sSf --netrc-file ${netrc} http://cache/nix-cache-info")

    with subtest("the timer refreshes the token on its own"):
        first = workstation.succeed("sha256sum ${netrc}").strip()
        workstation.wait_until_succeeds(f"test \"$(sha256sum ${netrc})\" != '{first}'", timeout=120)
        # The run that wrote it has ended, and succeeded.
        workstation.wait_until_succeeds(
            "su - ${t.user.name} -c 'XDG_RUNTIME_DIR=/run/user/$(id -u) systemctl --user show -P ActiveState nix-cache-login.service' | grep -qx inactive"
        )
        assert unit_property("${t.user.name}", "Result") == "success"
        assert unit_property("${t.user.name}", "ExecMainStatus") == "0"
        workstation.succeed("curl -sSf --netrc-file ${netrc} http://cache/nix-cache-info")

    with subtest("the timer's run had the session bus and secret-tool; with no Secret Service, auto kept the file"):
        # token_storage is unset (auto). The user unit has the user manager's bus, and the
        # package's wrapper puts secret-tool on its PATH, so the renewal asked the Secret Service;
        # none runs on this machine, and the token stayed in the state file. The reason the CLI
        # recorded says which step failed: without the bus it names D-Bus, without secret-tool
        # the missing tool; only a run of secret-tool on the bus names the Secret Service.
        stored = json.loads(workstation.succeed("su - ${t.user.name} -c 'nix-cache-login status --json'"))["refresh_token"]
        assert stored["stored_in"] == "file", stored
        assert "Secret Service" in (stored["file_reason"] or ""), stored

    with subtest("the token stays valid over several access-token lifetimes"):
        workstation.sleep(${toString (3 * t.accessTokenLifespan)})
        workstation.succeed("su - ${t.user.name} -c 'nix-cache-login status'")
        workstation.succeed("curl -sSf --netrc-file ${netrc} http://cache/nix-cache-info")
        assert unit_property("${t.user.name}", "Result") == "success"

    with subtest("exit 3 (not signed in) does not fail the unit"):
        workstation.succeed("su - bob -c 'mkdir -p -m 700 ~/.local/state/nix-cache-login'")
        workstation.wait_until_succeeds(
            "su - bob -c 'XDG_RUNTIME_DIR=/run/user/$(id -u) systemctl --user show -p ExecMainStatus --value nix-cache-login.service' | grep -qx 3",
            timeout=90,
        )
        assert unit_property("bob", "Result") == "success"
        assert unit_property("bob", "ActiveState") != "failed"
  '';
}
