# Passwords and Redis URLs: finding one written into a URL (it would land in the
# world-readable Nix store), and adding one at run time from a credential.
{lib}: {
  # redis://:pw@h, redis://user:pw@h, unix:///s?pass=pw, …?password=pw
  hasPassword = url:
    builtins.match "[A-Za-z0-9+.-]+://[^/?#@]*:[^/?#@]*@.*" url
    != null
    || builtins.match ".*[?&](pass|password)=.*" url != null;

  # The URL without user-info and query, to name it in a message without its password.
  redact = url: let
    m = builtins.match "([A-Za-z0-9+.-]+://)([^/?#@]*@)?([^?#]*).*" url;
  in
    if m == null
    then "(unparsable URL)"
    else "${lib.elemAt m 0}${lib.elemAt m 2}";

  # withPassword VAR URL: a shell word that expands to URL with the (already
  # percent-encoded) password held in the shell variable VAR: in the user-info part
  # of redis:// and rediss:// URLs, as `pass=` of unix-socket URLs (the form the
  # redis crate reads).
  withPassword = var: url: let
    q = lib.escapeShellArg;
    pw = "\"\$${var}\"";
    m = builtins.match "([A-Za-z0-9+.-]+://)([^/?#]*)(.*)" url;
    scheme = lib.elemAt m 0;
    authority = lib.elemAt m 1;
    rest = lib.elemAt m 2;
    user = builtins.match "(.*)@(.*)" authority;
  in
    if m == null
    then q url
    else if lib.hasInfix "unix" scheme
    then
      q "${url}${
        if lib.hasInfix "?" url
        then "&"
        else "?"
      }pass="
      + pw
    else if user != null
    then q "${scheme}${lib.elemAt user 0}:" + pw + q "@${lib.elemAt user 1}${rest}"
    else q "${scheme}:" + pw + q "@${authority}${rest}";
}
