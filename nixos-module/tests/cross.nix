# Issue 17.7: cross-compiled to aarch64 (the harness sets the host platform): the
# build machine cannot run the host's dsf, so no check-config derivation is made.
{
  services.dsf = {
    enable = true;
    nodes.count = 1;
  };
}
