# services.dsf.balancer.etcd: membership shared between balancers through etcd
# (PROTOCOL §10), on an existing cluster or on a single member run on this host
# through services.etcd.
{
  cfg,
  config,
  lib,
  addr,
}: let
  inherit (lib) mkOption types;
  etcd = cfg.balancer.etcd;
  # The URLs the balancer is given: the local member's advertised client URLs, or the
  # configured cluster.
  endpoints =
    if etcd.createLocally
    then config.services.etcd.advertiseClientUrls
    else etcd.endpoints;
in {
  options = {
    endpoints = mkOption {
      type = types.listOf (types.strMatching "https?://[^/?#]+/?");
      default = [];
      example = ["https://10.0.0.21:2379" "https://10.0.0.22:2379" "https://10.0.0.23:2379"];
      description = ''
        Client URLs (`http://host:port` or `https://host:port`) of the etcd cluster (v3
        API) through which this balancer shares membership with the others: the
        `balancer.etcd` setting. `https://` endpoints are verified with {option}`caFile`,
        and {option}`certificateFile` answers etcd's `--client-cert-auth`; plain `http://`
        belongs on a private network only. With a non-empty list the
        balancer writes each registration it holds under {option}`prefix`, on an etcd
        lease of {option}`services.dsf.balancer.leaseTtl` that it keeps alive, and watches
        the other balancers' registrations there; no clock is compared across hosts.
        List every member, so that the balancer reaches the cluster while one of them is
        down. While no quorum answers, the balancer's `/readyz` fails and it keeps
        serving the last membership it saw. Redis membership (`settings.balancer.redis`)
        cannot be used at the same time.
      '';
    };
    prefix = mkOption {
      type = types.strMatching "/.*/";
      default = "/dsf/";
      example = "/prod/dsf/";
      description = ''
        Key prefix of the registrations (`balancer.etcd_prefix`): a node's key is
        `<prefix>nodes/<service>/<node>`. Balancers that share membership use the same
        prefix; clusters that share one etcd use different ones.
      '';
    };
    caFile = mkOption {
      type = types.nullOr types.path;
      default = null;
      example = "/etc/dsf/etcd-ca.pem";
      description = ''
        PEM bundle that verifies the `https://` etcd endpoints (`balancer.etcd_tls_ca`);
        `null` = the system's roots. Passed to the balancer as a systemd credential.
      '';
    };
    certificateFile = mkOption {
      type = types.nullOr types.path;
      default = null;
      example = "/run/secrets/etcd-client.pem";
      description = ''
        PEM client certificate chain the balancer presents to etcd
        (`balancer.etcd_tls_cert`), for members run with `--client-cert-auth`. Goes with
        {option}`keyFile`. Passed as a systemd credential, so the balancer's dynamic user
        needs no access to the file.
      '';
    };
    keyFile = mkOption {
      type = types.nullOr types.path;
      default = null;
      example = "/run/secrets/etcd-client.key";
      description = "PEM private key of {option}`certificateFile` (`balancer.etcd_tls_key`). Keep it outside the Nix store; give it as a string.";
    };
    createLocally = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Run etcd on this host ({option}`services.etcd`: by default a single member
        listening on `http://127.0.0.1:2379`) and point the balancer at its
        {option}`services.etcd.advertiseClientUrls`: etcd membership for a single host,
        or for trying it out. The balancer starts after `etcd.service` but does not
        stop with it. Any local user can reach a loopback etcd without authentication
        (and with it the membership): for several hosts, or several users on this one,
        run an etcd cluster with client certificates and list it in {option}`endpoints`.
      '';
    };
  };

  inherit endpoints;
  used = endpoints != [];

  # TLS files of the etcd client: systemd credentials of the balancer, named in its
  # environment (`%d` is the credentials folder), never in the rendered settings.
  unit = let
    files = lib.filterAttrs (_: f: f != null) {
      etcd-tls-ca = etcd.caFile;
      etcd-tls-cert = etcd.certificateFile;
      etcd-tls-key = etcd.keyFile;
    };
    variable = id: "DSF__BALANCER__" + lib.toUpper (lib.replaceStrings ["-"] ["_"] id);
  in {
    credentials = lib.mapAttrsToList (id: f: "${id}:${toString f}") files;
    environment = lib.mapAttrs' (id: _: lib.nameValuePair (variable id) "%d/${id}") files;
  };

  # Whether the balancer reaches etcd beyond this host (network-online.target).
  remote = lib.any (u: !addr.urlIsLocal u) endpoints;

  assertions = [
    {
      assertion = (etcd.certificateFile == null) == (etcd.keyFile == null);
      message = "services.dsf.balancer.etcd: certificateFile and keyFile go together; set both.";
    }
    {
      assertion = (etcd.caFile == null && etcd.certificateFile == null) || lib.any (lib.hasPrefix "https://") endpoints;
      message = "services.dsf.balancer.etcd: caFile and certificateFile are for https:// endpoints, and none is listed; use https:// URLs in balancer.etcd.endpoints, or remove the TLS files.";
    }
    {
      assertion = !(etcd.keyFile != null && lib.hasPrefix builtins.storeDir (toString etcd.keyFile));
      message = "services.dsf.balancer.etcd.keyFile: a private key must not be in the Nix store (everyone can read it); give it as a string like \"/run/secrets/etcd-client.key\".";
    }
    {
      assertion = !(etcd.createLocally && etcd.endpoints != []);
      message = "services.dsf.balancer.etcd: createLocally = true runs etcd here and points the balancer at it; remove balancer.etcd.endpoints, or set createLocally = false to use them.";
    }
    {
      assertion = cfg.balancer.enable || !(etcd.createLocally || etcd.endpoints != []);
      message = "services.dsf.balancer.etcd is set but services.dsf.balancer.enable = false: only the balancer uses etcd (nodes register with a balancer, never with etcd); remove balancer.etcd, or run etcd members with services.etcd.";
    }
    {
      # Settings may also name the backends directly; the balancer takes one of them.
      assertion = !((cfg.settings.balancer.etcd or []) != [] && (cfg.settings.balancer.redis or "") != "");
      message = "services.dsf: the balancer's membership is set to both etcd (balancer.etcd.endpoints, balancer.etcd.createLocally or settings.balancer.etcd) and Redis (settings.balancer.redis); dsf uses one of them: remove settings.balancer.redis, or the etcd options.";
    }
  ];
}
