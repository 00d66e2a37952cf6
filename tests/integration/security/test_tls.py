"""TLS and mutual TLS, with throwaway certificates, through both SDKs."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from jobwire.client import AsyncClient, GatewayUnavailableError
from jobwire.client import TLSConfig as ClientTLS
from jobwire.client._cli import main as client_cli
from jobwire.gateway import Gateway
from jobwire.worker import HandlerRegistry, Worker
from jobwire.worker import TLSConfig as WorkerTLS
from jobwire.worker._cli import _parser as worker_cli_parser
from jobwire.worker._cli import _tls as worker_cli_tls

from conftest import GatewayFactory


@dataclass(frozen=True)
class Certificates:
    """PEM files of a CA, a gateway (localhost, 127.0.0.1) and a client it signed."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    directory = tmp_path_factory.mktemp("tls")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _issue("jobwire test CA", ca_key, _name("jobwire test CA"), ca_key, ca=True)
    paths: dict[str, Path] = {}
    for role in ("server", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _issue(f"jobwire {role}", key, ca.subject, ca_key, server=role == "server")
        paths[f"{role}_cert"] = directory / f"{role}.pem"
        paths[f"{role}_cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        paths[f"{role}_key"] = _write_key(key, directory / f"{role}.key")
    ca_path = directory / "ca.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return Certificates(ca=ca_path, **paths)


def mutual_tls(certificates: Certificates) -> dict[str, object]:
    """The ``[server.tls]`` table of a gateway that requires client certificates."""
    return {
        "cert": str(certificates.server_cert),
        "key": str(certificates.server_key),
        "client_ca": str(certificates.ca),
        "require_client_cert": True,
    }


async def round_trip(address: str, client_tls: ClientTLS, worker_tls: WorkerTLS) -> None:
    """Enqueue through the client SDK and run the job through the worker SDK."""
    done = asyncio.Event()
    registry = HandlerRegistry()
    registry.register("t", lambda payload: done.set())
    async with AsyncClient(address, tls=client_tls) as client:
        job = await client.enqueue("t", {})
        async with Worker(address, registry=registry, tls=worker_tls):
            await asyncio.wait_for(done.wait(), 10)
        await client.wait(job.id, timeout=10)  # raises unless the job completed


async def refuses_plaintext(address: str) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await health.Check(health_pb2.HealthCheckRequest(), timeout=3)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_tls(gateway_factory: GatewayFactory, certificates: Certificates) -> None:
    tls = {"cert": str(certificates.server_cert), "key": str(certificates.server_key)}
    gateway: Gateway = await gateway_factory(server={"tls": tls})
    address = gateway.address.replace("127.0.0.1", "localhost")
    await round_trip(address, ClientTLS(ca=certificates.ca), WorkerTLS(ca=certificates.ca))
    await refuses_plaintext(gateway.address)


async def test_mutual_tls(gateway_factory: GatewayFactory, certificates: Certificates) -> None:
    gateway: Gateway = await gateway_factory(server={"tls": mutual_tls(certificates)})
    ca, cert, key = certificates.ca, certificates.client_cert, certificates.client_key
    await round_trip(
        gateway.address,
        ClientTLS(ca=ca, cert=cert, key=key),
        WorkerTLS(ca=ca, cert=cert, key=key),
    )
    await refuses_plaintext(gateway.address)
    # TLS without a client certificate is refused as well.
    with pytest.raises(GatewayUnavailableError):
        await AsyncClient.connect(gateway.address, tls=ClientTLS(ca=certificates.ca), timeout=3)


async def test_clis_take_tls_options(
    gateway_factory: GatewayFactory, certificates: Certificates
) -> None:
    gateway: Gateway = await gateway_factory(server={"tls": mutual_tls(certificates)})
    options = [
        f"--tls-ca={certificates.ca}",
        f"--tls-cert={certificates.client_cert}",
        f"--tls-key={certificates.client_key}",
    ]
    # The sync CLI blocks; the gateway runs on this loop.
    assert (
        await asyncio.to_thread(client_cli, ["--gateway", gateway.address, *options, "stats"]) == 0
    )
    args = worker_cli_parser().parse_args(["app:registry", *options])
    assert worker_cli_tls(args) == WorkerTLS(
        ca=str(certificates.ca),
        cert=str(certificates.client_cert),
        key=str(certificates.client_key),
    )
