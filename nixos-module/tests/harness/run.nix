# One test: evaluate ../TEST.nix with the module at MODULE and apply its checks.
# A test with `variants` (name -> another configuration file in ../) also has those
# evaluated and handed to its `compare`, e.g. to see which triggers a change moves.
# Prints { failed = [what…]; passed = N; rendered = { unit = text; }; sockets = { … }; }.
{
  lib ? import <nixlib/lib>,
  module,
  test,
}: let
  spec = (import ./checks.nix {inherit lib;}).${test};
  evalOf = file:
    import ./eval.nix {
      inherit lib module;
      config = ../. + "/${file}.nix";
      hostSystem = spec.hostSystem or "x86_64-linux";
    };
  r = evalOf test;
  results = spec.check r ++ lib.optionals (spec ? variants) (spec.compare r (lib.mapAttrs (_: evalOf) spec.variants));
in {
  failed = map (x: x.what) (lib.filter (x: !x.ok) results);
  passed = lib.length (lib.filter (x: x.ok) results);
  rendered =
    if r.failedAssertions == []
    then r.rendered
    else {};
  sockets =
    if r.failedAssertions == []
    then r.renderedSockets
    else {};
}
