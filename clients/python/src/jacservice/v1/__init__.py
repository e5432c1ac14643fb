"""Stubs generated from src/Protos/jacservice/v1/jacservice.proto when the package is built (see setup.py):
jacservice_pb2 (messages), jacservice_pb2_grpc (JacobianServiceStub) and jacservice_wire_pb2 (internal)."""
