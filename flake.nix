{
  description = "nix-cache-login: keep an OIDC access token for a protected Nix binary cache in your netrc";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  # Home Manager and nix-darwin are not inputs: their modules here are plain module functions,
  # and the checks evaluate them against stand-ins for those projects' options (nix/tests/stubs.nix);
  # nix/ci-check.sh also evaluates them inside checkouts of those projects (nix/tests/real-modules.nix).
  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;

      systems = [
        "x86_64-linux"
        "aarch64-linux"
        "x86_64-darwin"
        "aarch64-darwin"
      ];

      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      overlays.default = final: _prev: {
        nix-cache-login = final.callPackage ./nix/package.nix { };
      };

      packages = forAllSystems (
        pkgs:
        let
          nix-cache-login = pkgs.callPackage ./nix/package.nix { };
        in
        {
          inherit nix-cache-login;
          default = nix-cache-login;
        }
      );

      apps = forAllSystems (pkgs: {
        default = {
          type = "app";
          program = lib.getExe self.packages.${pkgs.stdenv.hostPlatform.system}.default;
          meta.description = "Sign in and keep the Nix binary cache token in your netrc";
        };
      });

      nixosModules = {
        default = ./nix/modules/nixos-workstation.nix;
        workstation = ./nix/modules/nixos-workstation.nix;
        server = ./nix/modules/nixos-server.nix;
      };

      homeManagerModules.default = ./nix/modules/home-manager.nix;
      homeModules.default = ./nix/modules/home-manager.nix;

      darwinModules.default = ./nix/modules/darwin.nix;

      checks = forAllSystems (
        pkgs:
        import ./nix/checks.nix {
          inherit pkgs self;
          nixosSystem = nixpkgs.lib.nixosSystem;
        }
      );

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          packages = [
            self.packages.${pkgs.stdenv.hostPlatform.system}.default.nodejs
            pkgs.nixfmt
          ];
        };
      });

      formatter = forAllSystems (pkgs: pkgs.nixfmt-tree);
    };
}
