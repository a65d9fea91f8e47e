"""Real multi-node Redis set-ups for the tests: a 3-master Cluster, and a master, a replica and a Sentinel.

Each node is a redis-server process on a free loopback port with its own
folder; the Cluster's nodes keep an append-only file fsynced on every write,
so a master restarted mid-run comes back with what it acknowledged.
"""

import random
import shutil
import socket
import subprocess
import tempfile
import time

import redis

from fastsession.bench.redis_server import free_port


def wait_until(check, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except redis.exceptions.RedisError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


def cluster_port():
    """A free port that a Cluster node can use: its bus port (port + 10000) must be free and below 65536."""
    while True:
        port = random.randrange(20000, 45000)
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port


class Node:
    """One redis-server process (its port, folder and extra options); stop() and start() again keep its files."""

    def __init__(self, folder, *options):
        self.port = cluster_port() if "--cluster-enabled" in options else free_port()
        self.folder = folder
        self.options = list(options)
        self.process = None

    def start(self):
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: apt-get install -y redis-server")
        with open(f"{self.folder}/server.log", "ab") as log:
            self.process = subprocess.Popen(
                [
                    binary,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    self.folder,
                    "--save",
                    "",
                    *self.options,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        client = redis.Redis(host="127.0.0.1", port=self.port)
        try:
            wait_until(client.ping, 10, f"redis-server on port {self.port}")
        except TimeoutError:
            with open(f"{self.folder}/server.log") as log:
                raise RuntimeError(f"redis-server did not start: {log.read()[-2000:]}") from None
        finally:
            client.close()
        return self

    def kill(self):
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def stop(self):
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


class Cluster:
    """Three masters, no replicas, every slot covered (redis-cli --cluster create)."""

    def __init__(self, masters=3):
        self.root = tempfile.mkdtemp(prefix="fastsession-cluster-")
        self.nodes = []
        for index in range(masters):
            folder = f"{self.root}/{index}"
            subprocess.run(["mkdir", "-p", folder], check=True)
            self.nodes.append(
                Node(
                    folder,
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                    "--appendonly",
                    "yes",
                    "--appendfsync",
                    "always",
                )
            )

    def start(self):
        try:
            return self._start()
        except BaseException:
            self.stop()  # no node outlives a failed start
            raise

    def _start(self):
        for node in self.nodes:
            node.start()
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{n.port}" for n in self.nodes),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self.ready, 30, "the cluster to be ok")
        return self

    def ready(self):
        for node in self.nodes:
            info = redis.Redis(host="127.0.0.1", port=node.port).cluster("info")
            if info.get("cluster_state") != "ok":
                return False
        return True

    @property
    def port(self):
        return self.nodes[0].port

    def client(self, **options):
        from redis.cluster import RedisCluster

        return RedisCluster(host="127.0.0.1", port=self.port, **options)

    def stop(self):
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class SentinelSetup:
    """A master, one replica of it, and one Sentinel watching them (quorum 1) under the name ``mymaster``."""

    name = "mymaster"

    def __init__(self):
        self.root = tempfile.mkdtemp(prefix="fastsession-sentinel-")
        for sub in ("master", "replica", "sentinel"):
            subprocess.run(["mkdir", "-p", f"{self.root}/{sub}"], check=True)
        self.master = Node(f"{self.root}/master", "--appendonly", "no")
        self.replica = Node(f"{self.root}/replica", "--appendonly", "no")
        self.replica.options += ["--replicaof", "127.0.0.1", str(self.master.port)]
        self.sentinel_port = free_port()
        self.sentinel = None

    def start(self):
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self):
        self.master.start()
        self.replica.start()
        wait_until(
            lambda: (
                redis.Redis(host="127.0.0.1", port=self.replica.port).info("replication")["master_link_status"] == "up"
            ),
            30,
            "the replica to sync",
        )
        config = f"{self.root}/sentinel/sentinel.conf"
        with open(config, "w") as out:
            out.write(
                f"port {self.sentinel_port}\nbind 127.0.0.1\n"
                f"sentinel monitor {self.name} 127.0.0.1 {self.master.port} 1\n"
                f"sentinel down-after-milliseconds {self.name} 1000\n"
                f"sentinel failover-timeout {self.name} 5000\n"
            )
        self.sentinel = subprocess.Popen(
            [shutil.which("redis-server"), config, "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_until(self.replica_promotable, 60, "the sentinel to know the replica well enough to promote it")
        return self

    def replica_promotable(self):
        """Whether the Sentinel has the replica's own INFO: until then a failover answers NOGOODSLAVE."""
        replicas = redis.Redis(host="127.0.0.1", port=self.sentinel_port).sentinel_slaves(self.name)
        return any(
            r.get("master-link-status") == "ok" and not r.get("is_disconnected") and r.get("info-refresh", 10**9) < 5000
            for r in replicas
        )

    def sentinel_client(self):
        from redis.sentinel import Sentinel

        return Sentinel([("127.0.0.1", self.sentinel_port)], socket_timeout=2.0)

    def master_port(self):
        return int(
            redis.Redis(host="127.0.0.1", port=self.sentinel_port).sentinel_get_master_addr_by_name(self.name)[1]
        )

    def failover(self):
        """Ask the Sentinel to promote the replica; returns once the old master follows the new one."""
        old = self.master_port()
        wait_until(self.replica_promotable, 60, "a replica the sentinel may promote")
        redis.Redis(host="127.0.0.1", port=self.sentinel_port).execute_command("SENTINEL", "FAILOVER", self.name)
        wait_until(lambda: self.master_port() != old, 30, "the failover")
        new = self.master_port()
        wait_until(
            lambda: redis.Redis(host="127.0.0.1", port=old).info("replication")["role"] == "slave",
            30,
            "the old master to become a replica",
        )
        return new

    def stop(self):
        if self.sentinel is not None:
            self.sentinel.terminate()
            self.sentinel.wait(10)
        self.replica.stop()
        self.master.stop()
        shutil.rmtree(self.root, ignore_errors=True)
