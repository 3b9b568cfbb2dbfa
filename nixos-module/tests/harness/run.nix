# One test: evaluate ../TEST.nix with the module at MODULE and apply its checks.
# Prints { failed = [what…]; passed = N; rendered = { unit = text; }; }.
{
  lib ? import <nixlib/lib>,
  module,
  test,
}: let
  spec = (import ./checks.nix {inherit lib;}).${test};
  r = import ./eval.nix {
    inherit lib module;
    config = ../. + "/${test}.nix";
    hostSystem = spec.hostSystem or "x86_64-linux";
  };
  results = spec.check r;
in {
  failed = map (x: x.what) (lib.filter (x: !x.ok) results);
  passed = lib.length (lib.filter (x: x.ok) results);
  rendered =
    if r.failedAssertions == []
    then r.rendered
    else {};
}
