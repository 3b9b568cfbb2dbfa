# socketActivation = false: no .socket unit; each process binds its own listeners.
{
  services.dsf = {
    enable = true;
    checkConfig = false;
    socketActivation = false;
    nodes.instances.a.port = 7001;
  };
}
