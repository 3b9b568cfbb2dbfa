# Evaluates the module with one test configuration against the stubs. Returns the
# configuration, the options, and every systemd service rendered as a unit file the
# way NixOS writes it (one `Key=value` line per list element), for systemd-analyze.
{
  lib,
  module,
  config,
  hostSystem ? "x86_64-linux",
}: let
  pkgs = import ./pkgs.nix {inherit lib hostSystem;};
  eval = lib.evalModules {
    modules = [./stubs.nix module config];
    specialArgs = {
      inherit pkgs;
      modulesPath = "/modules";
    };
  };
  c = eval.config;

  # What the fake generators append after `#` (settings, script text) is not part of
  # the path.
  value = v:
    if lib.isBool v
    then lib.boolToString v
    else let
      s = toString v;
      m = builtins.match "(/nix/store/[^#]*)#.*" s;
    in
      if m == null
      then s
      else lib.head m;
  lines = k: v:
    if lib.isList v
    then map (x: "${k}=${value x}") v
    else ["${k}=${value v}"];
  section = title: attrs:
    "[${title}]\n" + lib.concatMapStrings (l: l + "\n") (lib.concatLists (lib.mapAttrsToList lines attrs));
  words = l: lib.optionalAttrs (l != []) {__v = lib.concatStringsSep " " l;};
  deps = u:
    lib.mapAttrs (_: v: v.__v) (lib.filterAttrs (_: v: v != {}) {
      After = words (u.after or []);
      Before = words (u.before or []);
      PartOf = words (u.partOf or []);
      Requires = words (u.requires or []);
      Wants = words (u.wants or []);
    });
  # NixOS writes the triggers as X- keys of [Unit], which systemd ignores; a change
  # of X-Reload-Triggers alone makes a switch reload the unit instead of restarting it.
  triggers = u:
    lib.optionalAttrs ((u.reloadTriggers or []) != []) {X-Reload-Triggers = map value u.reloadTriggers;}
    // lib.optionalAttrs ((u.restartTriggers or []) != []) {X-Restart-Triggers = map value u.restartTriggers;};
  render = name: u:
    section "Unit" ({Description = u.description or name;} // deps u // triggers u // u.unitConfig or {})
    + "\n"
    + section "Service" (
      lib.optionalAttrs (u ? script) {ExecStart = "/nix/store/00000000000000000000000000000000-unit-script-${name}-start/bin/${name}-start";}
      // lib.optionalAttrs ((u.environment or {}) != {}) {
        Environment = lib.mapAttrsToList (k: v: "\"${k}=${v}\"") u.environment;
      }
      // u.serviceConfig or {}
    );
in {
  inherit (eval) options;
  config = c;
  units = c.systemd.services;
  failedAssertions = map (a: a.message) (lib.filter (a: !a.assertion) c.assertions);
  inherit (c) warnings;
  rendered = lib.mapAttrs render c.systemd.services;
  renderedSockets = lib.mapAttrs (name: s:
    section "Unit" ({Description = s.description or name;} // deps s // s.unitConfig or {})
    + "\n"
    + section "Socket" ({ListenStream = s.listenStreams or [];} // s.socketConfig or {}))
  c.systemd.sockets;
  sockets = c.systemd.sockets;
  # The text of a unit's first ExecStartPre script.
  preScriptOf = unit: let
    pre = c.systemd.services.${unit}.serviceConfig.ExecStartPre;
    m = builtins.match "[^#]*#(.*)" (lib.head (lib.toList pre));
  in
    if m == null
    then throw "${unit}: no ExecStartPre script"
    else lib.head m;
  # The settings of a unit, as the module rendered them (with checkConfig = false):
  # the file it reloads on, which /etc/dsf/NAME.toml links to.
  settingsOf = unit: let
    m = builtins.match ".*\\.toml#(.*)" (toString (lib.head c.systemd.services.${unit}.reloadTriggers));
  in
    if m == null
    then throw "${unit}: no rendered settings in its reload trigger (set checkConfig = false in the test)"
    else builtins.fromJSON (lib.head m);
}
