"""A real multi-node Ray cluster on the loopback interface for fault tests: a head and worker nodes (`ray start
--block`), each with its own CPUs, temp dir and ports, each in its own process group so a node is stopped, drained as
Kubernetes removes a pod, or lost without grace (its raylet and workers SIGKILLed) by PID, never by name; node death
is detected within seconds."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.processes import descendants

# Ray swaps 127.0.0.1 for the machine's address when it connects; 127.0.0.2 is loopback too, and kept as it is.
NODE_IP = "127.0.0.2"
WORKER_PORTS = 201  # each node's range of worker ports
# GCS health checks every 0.5 s, a node dead after 3 misses: a lost node is noticed in ~2 s instead of ~30 s.
FAST_DEATH = {
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "500",
    "RAY_health_check_failure_threshold": "3",
    "RAY_health_check_initial_delay_ms": "1000",
}
# A SIGTERMed node first drains, up to 30 s by default (Ray 2.60, for KubeRay upgrades and scale-downs): Serve starts
# its replicas elsewhere and stops them once replaced, or when the drain ends. A head never finishes draining, so each
# test cluster's exit would wait the whole time: the head does not drain; workers drain for at most 10 s.
DRAIN_S = {"head": "0", "worker": "10"}


def free_ports(n: int, avoid: set[int] = frozenset()) -> list[int]:
    """`n` distinct TCP ports that nothing holds right now, on any address, none in `avoid` (bound, never listened
    on)."""
    held: list[socket.socket] = []  # every socket stays bound until the end, so no port is handed out twice
    ports: list[int] = []
    try:
        while len(ports) < n:
            held.append(socket.socket())
            held[-1].bind(("", 0))  # free on every address: on 127.0.0.1 (where a test's server listens) as well
            if (port := held[-1].getsockname()[1]) not in avoid:
                ports.append(port)
        return ports
    finally:
        for s in held:
            s.close()


class LocalCluster:
    """Head plus worker nodes on this machine; use as a context manager (every node stopped at exit)."""

    def __init__(self, root: Path, head_cpus: int, worker_cpus: list[int]):
        self.root, self.head_cpus, self.worker_cpus = root, head_cpus, worker_cpus
        self.temp_dir = tempfile.mkdtemp(prefix="rc-", dir="/tmp")  # Ray's socket paths must stay under 108 bytes
        self.nodes: list[subprocess.Popen] = []
        self.removed: set[int] = set()  # PIDs of nodes killed or drained on purpose: their exit is no failure
        self.gcs_port = free_ports(1)[0]
        self.taken = {self.gcs_port}  # every port and worker-port range handed to a node: Ray refuses overlaps
        self.address = f"{NODE_IP}:{self.gcs_port}"
        self.env = {**os.environ, **FAST_DEATH, "RAY_AUTH_MODE": "disabled", "RAY_ADDRESS": self.address}

    def __enter__(self) -> LocalCluster:
        try:
            self._start(self.head_cpus, head=True)
            self._wait_for_port(self.gcs_port, "the head's GCS")  # workers can join from then on
            for cpus in self.worker_cpus:  # one at a time: two raylets starting at once on two cores can time out
                self._wait_for_port(self._start(cpus, head=False), "a worker's raylet")
            self._wait_for_nodes(1 + len(self.worker_cpus))
        except BaseException:  # no __exit__ follows a failed __enter__: stop the nodes already started here
            self.__exit__()
            raise
        return self

    def add_worker(self, cpus: int) -> subprocess.Popen:
        """Start one more worker node and wait until it has joined; the node."""
        self._wait_for_port(self._start(cpus, head=False), "a worker's raylet")
        self._wait_for_nodes(len(self.live_nodes()))
        return self.nodes[-1]

    def live_nodes(self) -> list[subprocess.Popen]:
        """The nodes still running (head first), in the order they started."""
        return [node for node in self.nodes if node.poll() is None]

    def __exit__(self, *exc) -> None:
        for node in reversed(self.nodes):
            self.stop(node)
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def _start(self, cpus: int, head: bool) -> int:
        """Start a node; its raylet's port."""
        low = self._worker_port_range()
        node_manager, object_manager, agent, agent_grpc, runtime_env, metrics, client = free_ports(7, self.taken)
        self.taken.update((node_manager, object_manager, agent, agent_grpc, runtime_env, metrics, client))
        name = "head" if head else f"worker{len(self.nodes)}"  # as _names() lists them
        command = [
            str(Path(sys.executable).with_name("ray")), "start", "--block", "--disable-usage-stats",
            f"--node-ip-address={NODE_IP}", f"--num-cpus={cpus}", "--num-gpus=0",
            f"--node-manager-port={node_manager}", f"--object-manager-port={object_manager}",
            f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}",
            f"--runtime-env-agent-port={runtime_env}", f"--metrics-export-port={metrics}",
            f"--min-worker-port={low}", f"--max-worker-port={low + WORKER_PORTS - 1}",
            "--object-store-memory=200000000",
        ]  # fmt: skip
        if head:
            command += ["--head", f"--port={self.gcs_port}", "--include-dashboard=false"]
            command += [f"--ray-client-server-port={client}"]
            command += [f"--temp-dir={self.temp_dir}"]
        else:
            command += [f"--address={self.address}"]
        log = open(self.root / f"{name}.log", "w")  # noqa: SIM115 — the node writes to it until it stops
        env = {**self.env, "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": DRAIN_S["head" if head else "worker"]}
        self.nodes.append(
            subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        )
        return node_manager

    def reserve_port(self) -> int:
        """A free port for a server of the test's own (e.g. Serve's proxy), clear of every port the nodes use."""
        (port,) = free_ports(1, self.taken)
        self.taken.add(port)
        return port

    def _worker_port_range(self) -> int:
        """The first of 201 free ports for a node's workers, clear of every port given to a node so far."""
        while True:
            low = free_ports(1, self.taken)[0]
            ports = set(range(low, low + WORKER_PORTS))
            if not ports & self.taken and low + WORKER_PORTS <= 65535:
                self.taken |= ports
                return low

    def _wait_for_port(self, port: int, what: str, timeout_s: float = 120) -> None:
        """Until `what` accepts connections on `port`."""
        deadline = time.monotonic() + timeout_s
        while True:
            with contextlib.suppress(OSError), socket.create_connection((NODE_IP, port), timeout=1):
                return
            self._check_nodes_run(deadline, what)
            time.sleep(0.2)

    def _wait_for_nodes(self, count: int, timeout_s: float = 180) -> None:
        """Until `count` nodes are alive, as one driver polling `ray.nodes()` sees them (one Ray start-up, not one
        per poll)."""
        script = f"import ray, time\nray.init()\nwhile sum(n['Alive'] for n in ray.nodes()) != {count}: time.sleep(0.2)"
        deadline = time.monotonic() + timeout_s
        while True:
            probe = subprocess.Popen(
                [sys.executable, "-c", script], env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            try:
                while probe.poll() is None:
                    self._check_nodes_run(deadline, f"{count} live Ray nodes")
                    time.sleep(0.2)
            finally:
                if probe.poll() is None:
                    probe.kill()
                    probe.wait()
            if probe.returncode == 0:
                return
            time.sleep(1)  # the driver could not connect yet: try again

    def _check_nodes_run(self, deadline: float, waiting_for: str) -> None:
        """Raise with its log if a node has exited, or once `deadline` has passed."""
        for node, name in zip(self.nodes, self._names()):
            if node.poll() is not None and node.pid not in self.removed:
                log = (self.root / f"{name}.log").read_text()[-3000:]
                raise RuntimeError(f"Ray node {name} exited with code {node.returncode}:\n{log}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{waiting_for} not reached in time (logs in {self.root})")

    def _names(self) -> list[str]:
        return ["head"] + [f"worker{i}" for i in range(1, len(self.nodes))]

    def kill(self, node: subprocess.Popen) -> None:
        """Lose a node without grace: SIGKILL its `ray start`, raylet and workers (each worker has a session of its
        own, so they are found as the node's descendants by PID) at once."""
        self.removed.add(node.pid)
        pids = descendants(node.pid)
        os.killpg(node.pid, signal.SIGKILL)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        node.wait(timeout=30)

    def drain(self, node: subprocess.Popen, timeout_s: float = 60) -> float:
        """Remove a worker node as Kubernetes removes its pod: SIGTERM to the `ray start` process alone (a pod's PID
        1), which drains the node (Serve moves its replicas away) and then stops it; the seconds until it exited."""
        self.removed.add(node.pid)
        start = time.monotonic()
        node.send_signal(signal.SIGTERM)
        node.wait(timeout=timeout_s)
        return time.monotonic() - start

    def stop(self, node: subprocess.Popen) -> None:
        """Stop a node: SIGTERM its process group, SIGKILL what is left of the group after 20 s — also when `ray start`
        itself has exited, since its GCS and raylet may outlive it."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            node.wait(timeout=20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.pid, signal.SIGKILL)
        node.wait(timeout=30)
