# services.dsf.tls: TLS on every DSF listener and connection (PROTOCOL §8). The
# certificate, key and CA files stay outside the Nix store and reach each process as
# systemd credentials (copied by systemd, as root, into a folder only that unit can
# read), so a dynamic user needs no access to /etc or /run/secrets; the settings name
# them through the environment, `%d` being the credentials folder.
{
  cfg,
  lib,
}: let
  inherit (lib) mkOption types;
  tls = cfg.tls;
  clientCa =
    if tls.clientCaFile != null
    then tls.clientCaFile
    else tls.caFile;
  str = p: toString p;
in {
  options = {
    enable = lib.mkEnableOption ''
      TLS on every listener (node ports, the balancer's registration, directory and proxy
      ports) and on every connection between DSF processes; nodes register over mutual TLS
    '';
    certificateFile = mkOption {
      type = types.nullOr types.path;
      default = null;
      example = "/var/lib/acme/dsf.example.org/fullchain.pem";
      description = ''
        PEM certificate chain every DSF process of this host presents, as a server and as a
        client. With the balancer's default {option}`clientAuth`, a node may register only as
        an id its certificate names (common name or DNS name): issue it with every node id of
        this host (`node.id`, by default `<hostname>-<port>`), or give nodes their own with
        {option}`services.dsf.nodes.instances.<name>.tls.certificateFile`. Given as a string,
        it is not copied into the Nix store.
      '';
    };
    keyFile = mkOption {
      type = types.nullOr types.path;
      default = null;
      example = "/var/lib/acme/dsf.example.org/key.pem";
      description = "PEM private key of {option}`certificateFile`. Keep it outside the Nix store; give it as a string.";
    };
    caFile = mkOption {
      type = types.nullOr types.path;
      default = null;
      example = "/etc/dsf/ca.pem";
      description = ''
        PEM bundle that verifies the servers DSF connects to: nodes verify their balancer,
        the balancer's proxy verifies nodes.
      '';
    };
    clientCaFile = mkOption {
      type = types.nullOr types.path;
      default = null;
      defaultText = lib.literalExpression "config.services.dsf.tls.caFile";
      description = "PEM bundle with which the balancer verifies node (client) certificates; `null` = {option}`caFile`.";
    };
    clientAuth = mkOption {
      type = types.listOf (types.enum ["registration" "node" "directory" "proxy" "admin"]);
      default = ["registration"];
      description = ''
        Listeners of the balancer that require a client certificate chaining to
        {option}`clientCaFile`. The default makes nodes prove who they are while clients of
        the proxy and directory need none.
      '';
    };
  };

  # Per node: its own certificate and key (e.g. one naming its node id).
  nodeOptions = {
    certificateFile = mkOption {
      type = types.nullOr types.path;
      default = null;
      description = "This node's certificate chain; `null` = {option}`services.dsf.tls.certificateFile`.";
    };
    keyFile = mkOption {
      type = types.nullOr types.path;
      default = null;
      description = "This node's private key; `null` = {option}`services.dsf.tls.keyFile`.";
    };
  };

  # What a unit needs: `credentials` ("id:path") and `environment`. `balancer` adds the
  # client CA and the listeners that require client certificates.
  unit = {
    balancer ? false,
    certificateFile ? null,
    keyFile ? null,
  }: let
    cert =
      if certificateFile != null
      then certificateFile
      else tls.certificateFile;
    key =
      if keyFile != null
      then keyFile
      else tls.keyFile;
  in
    if !tls.enable
    then {
      credentials = [];
      environment = {};
    }
    else {
      credentials =
        ["tls-cert:${str cert}" "tls-key:${str key}" "tls-ca:${str tls.caFile}"]
        ++ lib.optional balancer "tls-client-ca:${str clientCa}";
      environment =
        {
          DSF__TLS__CERT = "%d/tls-cert";
          DSF__TLS__KEY = "%d/tls-key";
          DSF__TLS__CA = "%d/tls-ca";
        }
        // lib.optionalAttrs balancer {
          DSF__TLS__CLIENT_CA = "%d/tls-client-ca";
          DSF__TLS__CLIENT_AUTH = lib.concatStringsSep "," tls.clientAuth;
        };
    };

  assertions = let
    inStore = path: path != null && lib.hasPrefix builtins.storeDir (toString path);
    keys = [tls.keyFile] ++ lib.mapAttrsToList (_: n: n.tls.keyFile) cfg.nodes.instances;
  in [
    {
      # Every unit needs a certificate: the host's, or (nodes only) its own.
      assertion = !tls.enable || tls.certificateFile != null || !(cfg.balancer.enable || lib.any (n: n.tls.certificateFile == null) (lib.attrValues cfg.nodes.instances));
      message = "services.dsf.tls.enable needs a certificate: set services.dsf.tls.certificateFile (and keyFile), e.g. \"/var/lib/acme/HOST/fullchain.pem\".";
    }
    {
      assertion = !tls.enable || (tls.certificateFile == null) == (tls.keyFile == null);
      message = "services.dsf.tls: certificateFile and keyFile go together; set both.";
    }
    {
      assertion = !tls.enable || tls.caFile != null;
      message = "services.dsf.tls.enable: set services.dsf.tls.caFile, the CA bundle that verifies the balancer and the nodes (without it, connections between DSF processes would not use TLS).";
    }
    {
      assertion = !lib.any inStore keys;
      message = "services.dsf.tls: a private key must not be in the Nix store (everyone can read it); give keyFile as a string like \"/var/lib/acme/HOST/key.pem\".";
    }
    {
      assertion = lib.all (n: (n.tls.certificateFile == null) == (n.tls.keyFile == null)) (lib.attrValues cfg.nodes.instances);
      message = "services.dsf.nodes.instances.<name>.tls: certificateFile and keyFile go together; set both.";
    }
  ];
}
