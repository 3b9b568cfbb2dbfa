# Host addresses and URLs as the module compares them: whole addresses, never
# substrings, with IPv6 literals bracketed wherever a port follows.
{lib}: rec {
  # "[2001:db8::5]" -> "2001:db8::5"; anything else unchanged.
  unbracket = a:
    if lib.hasPrefix "[" a && lib.hasSuffix "]" a
    then lib.substring 1 (lib.stringLength a - 2) a
    else a;

  # "2001:db8::5" 6200 -> "[2001:db8::5]:6200"; "10.0.0.5" 6200 -> "10.0.0.5:6200".
  hostPort = address: port: let
    a = unbracket address;
  in
    if lib.hasInfix ":" a
    then "[${a}]:${toString port}"
    else "${a}:${toString port}";

  # "host:port" or "[v6]:port" -> the host, unbracketed.
  hostOf = hostport: let
    parts = lib.splitString ":" hostport;
  in
    if lib.hasPrefix "[" hostport
    then lib.head (lib.splitString "]" (lib.removePrefix "[" hostport))
    else if lib.length parts == 2
    then lib.head parts
    else hostport;

  isWildcard = a: lib.elem (unbracket a) ["" "0.0.0.0" "::"];
  isLoopback = a: let
    u = unbracket a;
  in
    u == "localhost" || u == "::1" || lib.hasPrefix "127." u;

  # The address a local client uses for a listener bound to `a`: a wildcard is
  # reached over the loopback address of its own family.
  localAddress = a: let
    u = unbracket a;
  in
    if u == "" || u == "0.0.0.0"
    then "127.0.0.1"
    else if u == "::"
    then "::1"
    else u;

  # A specific non-loopback address (or a name) exists only once the network is
  # configured, so binding it must wait for network-online.target.
  needsConfiguredAddress = a: !(isWildcard a || isLoopback a);

  # Whether a store or Redis URL stays on this host: a unix socket, or a loopback host.
  urlIsLocal = url: let
    m = builtins.match "([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)(.*)" url;
    hostport = lib.last (lib.splitString "@" (lib.elemAt m 1));
    host =
      if lib.hasPrefix "[" hostport
      then lib.head (lib.splitString "]" (lib.removePrefix "[" hostport))
      else lib.head (lib.splitString ":" hostport);
  in
    m
    != null
    && (lib.hasSuffix "unix" (lib.elemAt m 0)
      || host == ""
      || isLoopback host
      || lib.hasInfix "socket=" (lib.elemAt m 2));
}
