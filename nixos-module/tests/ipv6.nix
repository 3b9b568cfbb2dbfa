# Issue 17.3: a balancer on an IPv6 address; nodes register at that whole address,
# bracketed, not at a string with "::" replaced inside it.
{
  services.dsf = {
    enable = true;
    checkConfig = false;
    nodes.count = 1;
    balancer.listenAddress = "2001:db8::5";
  };
}
