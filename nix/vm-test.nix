# A NixOS VM with services.dsf: three nodes, a balancer, local MariaDB and Redis.
# Logs in through the balancer's proxy, survives a node stop, and stops cleanly;
# the local Redis is reached over its group's unix socket only.
{
  module,
  testers,
}:
testers.runNixOSTest {
  name = "dsf";

  nodes.machine = {
    imports = [module];
    services.dsf = {
      enable = true;
      nodes.count = 3;
      database.createLocally = true;
      redis.createLocally = true;
    };
    virtualisation.memorySize = 2048;
    virtualisation.cores = 2;
  };

  testScript = ''
    import json

    def call(op, body="{}", token=None):
        cmd = f"dsf client --proxy 127.0.0.1:6400 call {op} '{body}'"
        if token:
            cmd += f" --token {token}"
        out = json.loads(machine.succeed(cmd))
        return out.get("body", out)

    machine.wait_for_unit("dsf.target")
    for n in (1, 2, 3):
        machine.wait_for_unit(f"dsf-node-{n}.service")
    machine.wait_for_open_port(6400)
    machine.wait_until_succeeds(
        "dsf client --node 127.0.0.1:6300 call lb.nodes"
        " | grep -o '\"state\": *\"healthy\"' | wc -l | grep -qx 3",
        timeout=60,
    )

    with subtest("hardening: no capabilities, dynamic user"):
        machine.succeed("systemctl show -p CapabilityBoundingSet dsf-node-1 | grep -qx 'CapabilityBoundingSet='")
        machine.succeed("systemctl show -p DynamicUser dsf-node-1 | grep -qx DynamicUser=yes")

    with subtest("the local Redis: a unix socket of group redis-dsf, no TCP port"):
        machine.succeed("stat -c '%G %a' /run/redis-dsf/redis.sock | grep -qx 'redis-dsf 660'")
        machine.fail("ss -Htln 'sport = :6379' | grep -q .")
        machine.succeed("systemctl show -p SupplementaryGroups dsf-node-1 | grep -qx SupplementaryGroups=redis-dsf")

    with subtest("register, login and use the blacklist through the balancer"):
        call("user.register", '{"name":"alice","password":"correct horse battery"}')
        token = call("user.login", '{"name":"alice","password":"correct horse battery"}')["token"]
        call("blacklist.insert", '{"id_card":"VM-0001","name":"Mallory"}', token)
        assert call("blacklist.query", '{"id_card":"VM-0001"}', token)["listed"]

    with subtest("a stopped node does not stop the cluster, and the token works everywhere"):
        machine.succeed("systemctl stop dsf-node-1.service")
        for _ in range(10):
            assert call("blacklist.query", '{"id_card":"VM-0001"}', token)["listed"]

    with subtest("SIGTERM drains and exits 0"):
        machine.succeed("systemctl stop dsf-node-2.service")
        machine.succeed("systemctl show -p ExecMainStatus dsf-node-2 | grep -qx ExecMainStatus=0")
  '';
}
