"""Build step that generates the gRPC stubs from the repository's .proto (they are never committed).

Everything else about the package is in pyproject.toml; this file only adds the generation to build_py, so
`pip install clients/python` (or building a wheel) always ships stubs of the contract as it is in the tree.

Two modules are generated into jacservice/v1 of the build folder:
  jacservice_pb2.py / .pyi, jacservice_pb2_grpc.py  the standard stubs (protoc + grpc_python_plugin);
  jacservice_wire_pb2.py                            the same messages with Tensor.data declared `bytes`.
A packed `repeated float` and a `bytes` field have the same wire encoding, so the second module reads and writes
the identical bytes while letting the client hand float32 buffers to NumPy without a per-element loop.

Tools: protoc (Debian protobuf-compiler) and grpc_python_plugin (protobuf-compiler-grpc), or the environment
variables PROTOC and GRPC_PYTHON_PLUGIN. The .proto root is ../../src/Protos, or JACSERVICE_PROTO_ROOT.
"""

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
PROTO = "jacservice/v1/jacservice.proto"
WIRE_PROTO = "jacservice/v1/jacservice_wire.proto"


def find_tool(variable: str, name: str) -> str:
    path = os.environ.get(variable) or shutil.which(name)
    if not path:
        raise RuntimeError(f"{name} not found: install Debian's "
                           f"{'protobuf-compiler' if name == 'protoc' else 'protobuf-compiler-grpc'} or set {variable}")
    return path


def proto_root() -> Path:
    root = Path(os.environ.get("JACSERVICE_PROTO_ROOT") or HERE.parent.parent / "src" / "Protos")
    if not (root / PROTO).is_file():
        raise RuntimeError(f"{PROTO} not found under {root}; set JACSERVICE_PROTO_ROOT to the folder holding jacservice/")
    return root


def wire_variant(text: str) -> str:
    """The contract with Tensor.data as bytes, in its own package so both can be imported side by side."""
    tensor = re.search(r"message Tensor \{.*?\}", text, re.S)
    if tensor is None or "repeated float data = 2;" not in tensor.group(0):
        raise RuntimeError("message Tensor no longer has `repeated float data = 2;`: update setup.py's wire variant")
    body = tensor.group(0).replace("repeated float data = 2;", "bytes data = 2;")
    text = text[:tensor.start()] + body + text[tensor.end():]
    # The service is dropped: the client calls the real service's method paths with these message classes.
    text = re.sub(r"\nservice \w+ \{.*?\n\}\n", "\n", text, flags=re.S)
    return text.replace("package jacservice.v1;", "package jacservice.v1.wire;")


class BuildWithStubs(build_py):
    def run(self) -> None:
        super().run()
        protoc = find_tool("PROTOC", "protoc")
        plugin = find_tool("GRPC_PYTHON_PLUGIN", "grpc_python_plugin")
        root = proto_root()
        out = Path(self.build_lib)
        self.spawn([protoc, f"-I{root}", f"--python_out={out}", f"--pyi_out={out}", f"--grpc_python_out={out}",
                    f"--plugin=protoc-gen-grpc_python={plugin}", PROTO])
        with tempfile.TemporaryDirectory() as scratch:
            wire = Path(scratch) / WIRE_PROTO
            wire.parent.mkdir(parents=True)
            wire.write_text(wire_variant((root / PROTO).read_text()))
            self.spawn([protoc, f"-I{scratch}", f"--python_out={out}", WIRE_PROTO])
        for name in ("jacservice_pb2.py", "jacservice_pb2.pyi", "jacservice_pb2_grpc.py", "jacservice_wire_pb2.py"):
            if not (out / "jacservice" / "v1" / name).is_file():
                raise RuntimeError(f"protoc did not write jacservice/v1/{name}")


setup(cmdclass={"build_py": BuildWithStubs})
