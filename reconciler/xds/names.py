"""Names shared by compile and the xDS runtime, without importing any proto module.

Contract: pure string helpers; `server_listener_name` must match the bootstrap's
`server_listener_resource_name_template` (SERVER_LISTENER_TEMPLATE) with "%s" = "IP:PORT".
"""
SERVER_LISTENER_PREFIX = "grpc/server?xds.resource.listening_address="
SERVER_LISTENER_TEMPLATE = SERVER_LISTENER_PREFIX + "%s"


def server_listener_name(address: str, port: int) -> str:
    return f"{SERVER_LISTENER_PREFIX}{address}:{port}"
