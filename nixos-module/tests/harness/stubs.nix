# Permissive stand-ins for the NixOS options the module touches, so that it can be
# evaluated with nixpkgs' lib alone (no nixpkgs tree, no builds). Same idea as the
# team's shared nix-eval stubs, kept here so that the module's own tests can extend
# them (services.prometheus, networking.firewall and users are read back by checks).
# services.etcd keeps nixpkgs' defaults for the client URLs, which the module reads.
{lib, ...}: let
  any = lib.mkOption {
    type = lib.types.anything;
    default = {};
  };
  lst = lib.mkOption {
    type = lib.types.listOf lib.types.anything;
    default = [];
  };
  attrs = lib.mkOption {
    type = lib.types.attrsOf lib.types.anything;
    default = {};
  };
  etcd = lib.mkOption {
    type = lib.types.submodule ({config, ...}: {
      freeformType = lib.types.attrsOf lib.types.anything;
      options = {
        enable = lib.mkOption {
          type = lib.types.bool;
          default = false;
        };
        listenClientUrls = lib.mkOption {
          type = lib.types.listOf lib.types.str;
          default = ["http://127.0.0.1:2379"];
        };
        advertiseClientUrls = lib.mkOption {
          type = lib.types.listOf lib.types.str;
          default = config.listenClientUrls;
        };
      };
    });
    default = {};
  };
in {
  options = {
    assertions = lst;
    warnings = lst;
    services = {
      mysql = any;
      redis = any;
      inherit etcd;
      nginx = any;
      postgresql = any;
      prometheus = any;
    };
    systemd = {
      services = attrs;
      sockets = attrs;
      targets = attrs;
      tmpfiles = any;
      slices = attrs;
    };
    users = {
      users = attrs;
      groups = attrs;
    };
    environment = {
      etc = attrs;
      systemPackages = lst;
    };
    networking.firewall = any;
    meta = any;
    system.stateVersion = any;
  };
}
