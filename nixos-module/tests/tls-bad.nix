# Issue 12: TLS without a CA, or with a key in the Nix store, is refused.
{
  services.dsf = {
    enable = true;
    checkConfig = false;
    tls = {
      enable = true;
      certificateFile = "/nix/store/00000000000000000000000000000000-dsf.pem";
      keyFile = "/nix/store/00000000000000000000000000000000-dsf.key";
    };
  };
}
