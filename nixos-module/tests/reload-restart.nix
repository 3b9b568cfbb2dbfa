# reload.nix with a key that needs a restart changed.
{lib, ...}: {
  imports = [./reload.nix];
  services.dsf.settings.limits.request_timeout = lib.mkForce "2s";
}
