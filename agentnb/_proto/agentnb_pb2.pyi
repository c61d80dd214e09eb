from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CallKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CALL_KIND_UNSPECIFIED: _ClassVar[CallKind]
    CREATE: _ClassVar[CallKind]
    CALL: _ClassVar[CallKind]
    GETATTR: _ClassVar[CallKind]
    DELETE: _ClassVar[CallKind]
    CANCEL: _ClassVar[CallKind]
    DESCRIBE: _ClassVar[CallKind]

class ReplyStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REPLY_STATUS_UNSPECIFIED: _ClassVar[ReplyStatus]
    OK: _ClassVar[ReplyStatus]
    ERROR: _ClassVar[ReplyStatus]
    QUEUED: _ClassVar[ReplyStatus]
    RUNNING: _ClassVar[ReplyStatus]
    CANCELLED: _ClassVar[ReplyStatus]
CALL_KIND_UNSPECIFIED: CallKind
CREATE: CallKind
CALL: CallKind
GETATTR: CallKind
DELETE: CallKind
CANCEL: CallKind
DESCRIBE: CallKind
REPLY_STATUS_UNSPECIFIED: ReplyStatus
OK: ReplyStatus
ERROR: ReplyStatus
QUEUED: ReplyStatus
RUNNING: ReplyStatus
CANCELLED: ReplyStatus

class Call(_message.Message):
    __slots__ = ("seq", "kind", "agent_id", "method", "payload", "task_id", "watch", "waiting_chain", "part_sizes", "part_writable", "shm_name", "shm_reply", "owned")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    WATCH_FIELD_NUMBER: _ClassVar[int]
    WAITING_CHAIN_FIELD_NUMBER: _ClassVar[int]
    PART_SIZES_FIELD_NUMBER: _ClassVar[int]
    PART_WRITABLE_FIELD_NUMBER: _ClassVar[int]
    SHM_NAME_FIELD_NUMBER: _ClassVar[int]
    SHM_REPLY_FIELD_NUMBER: _ClassVar[int]
    OWNED_FIELD_NUMBER: _ClassVar[int]
    seq: int
    kind: CallKind
    agent_id: str
    method: str
    payload: bytes
    task_id: str
    watch: bool
    waiting_chain: _containers.RepeatedScalarFieldContainer[str]
    part_sizes: _containers.RepeatedScalarFieldContainer[int]
    part_writable: _containers.RepeatedScalarFieldContainer[bool]
    shm_name: str
    shm_reply: bool
    owned: bool
    def __init__(self, seq: _Optional[int] = ..., kind: _Optional[_Union[CallKind, str]] = ..., agent_id: _Optional[str] = ..., method: _Optional[str] = ..., payload: _Optional[bytes] = ..., task_id: _Optional[str] = ..., watch: _Optional[bool] = ..., waiting_chain: _Optional[_Iterable[str]] = ..., part_sizes: _Optional[_Iterable[int]] = ..., part_writable: _Optional[_Iterable[bool]] = ..., shm_name: _Optional[str] = ..., shm_reply: _Optional[bool] = ..., owned: _Optional[bool] = ...) -> None: ...

class Chunk(_message.Message):
    __slots__ = ("seq", "data")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    seq: int
    data: bytes
    def __init__(self, seq: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class ClientFrame(_message.Message):
    __slots__ = ("calls", "chunk")
    CALLS_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    calls: _containers.RepeatedCompositeFieldContainer[Call]
    chunk: Chunk
    def __init__(self, calls: _Optional[_Iterable[_Union[Call, _Mapping]]] = ..., chunk: _Optional[_Union[Chunk, _Mapping]] = ...) -> None: ...

class Reply(_message.Message):
    __slots__ = ("seq", "status", "payload", "task_id", "timestamp", "part_sizes", "part_writable", "shm_name")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    PART_SIZES_FIELD_NUMBER: _ClassVar[int]
    PART_WRITABLE_FIELD_NUMBER: _ClassVar[int]
    SHM_NAME_FIELD_NUMBER: _ClassVar[int]
    seq: int
    status: ReplyStatus
    payload: bytes
    task_id: str
    timestamp: float
    part_sizes: _containers.RepeatedScalarFieldContainer[int]
    part_writable: _containers.RepeatedScalarFieldContainer[bool]
    shm_name: str
    def __init__(self, seq: _Optional[int] = ..., status: _Optional[_Union[ReplyStatus, str]] = ..., payload: _Optional[bytes] = ..., task_id: _Optional[str] = ..., timestamp: _Optional[float] = ..., part_sizes: _Optional[_Iterable[int]] = ..., part_writable: _Optional[_Iterable[bool]] = ..., shm_name: _Optional[str] = ...) -> None: ...

class ServerFrame(_message.Message):
    __slots__ = ("replies", "chunk")
    REPLIES_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    replies: _containers.RepeatedCompositeFieldContainer[Reply]
    chunk: Chunk
    def __init__(self, replies: _Optional[_Iterable[_Union[Reply, _Mapping]]] = ..., chunk: _Optional[_Union[Chunk, _Mapping]] = ...) -> None: ...

class ResultRequest(_message.Message):
    __slots__ = ("task_id", "timeout", "shm_reply")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    SHM_REPLY_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    timeout: float
    shm_reply: bool
    def __init__(self, task_id: _Optional[str] = ..., timeout: _Optional[float] = ..., shm_reply: _Optional[bool] = ...) -> None: ...

class HelloRequest(_message.Message):
    __slots__ = ("client_nonce", "version")
    CLIENT_NONCE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    client_nonce: bytes
    version: str
    def __init__(self, client_nonce: _Optional[bytes] = ..., version: _Optional[str] = ...) -> None: ...

class HelloReply(_message.Message):
    __slots__ = ("server_nonce", "server_proof", "version")
    SERVER_NONCE_FIELD_NUMBER: _ClassVar[int]
    SERVER_PROOF_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    server_nonce: bytes
    server_proof: bytes
    version: str
    def __init__(self, server_nonce: _Optional[bytes] = ..., server_proof: _Optional[bytes] = ..., version: _Optional[str] = ...) -> None: ...

class InfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ServerInfo(_message.Message):
    __slots__ = ("name", "host", "port", "pid", "started", "capacity", "busy", "queued", "agents", "pool_type", "version", "completed", "host_id", "shm_dir", "session_socket")
    NAME_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    BUSY_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    POOL_TYPE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    SHM_DIR_FIELD_NUMBER: _ClassVar[int]
    SESSION_SOCKET_FIELD_NUMBER: _ClassVar[int]
    name: str
    host: str
    port: int
    pid: int
    started: float
    capacity: int
    busy: int
    queued: int
    agents: int
    pool_type: str
    version: str
    completed: int
    host_id: str
    shm_dir: str
    session_socket: str
    def __init__(self, name: _Optional[str] = ..., host: _Optional[str] = ..., port: _Optional[int] = ..., pid: _Optional[int] = ..., started: _Optional[float] = ..., capacity: _Optional[int] = ..., busy: _Optional[int] = ..., queued: _Optional[int] = ..., agents: _Optional[int] = ..., pool_type: _Optional[str] = ..., version: _Optional[str] = ..., completed: _Optional[int] = ..., host_id: _Optional[str] = ..., shm_dir: _Optional[str] = ..., session_socket: _Optional[str] = ...) -> None: ...

class ListAgentsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AgentDescription(_message.Message):
    __slots__ = ("agent_id", "name", "class_name", "sync_methods", "async_methods", "pending", "created")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    SYNC_METHODS_FIELD_NUMBER: _ClassVar[int]
    ASYNC_METHODS_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    name: str
    class_name: str
    sync_methods: _containers.RepeatedScalarFieldContainer[str]
    async_methods: _containers.RepeatedScalarFieldContainer[str]
    pending: int
    created: float
    def __init__(self, agent_id: _Optional[str] = ..., name: _Optional[str] = ..., class_name: _Optional[str] = ..., sync_methods: _Optional[_Iterable[str]] = ..., async_methods: _Optional[_Iterable[str]] = ..., pending: _Optional[int] = ..., created: _Optional[float] = ...) -> None: ...

class AgentList(_message.Message):
    __slots__ = ("agents",)
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    agents: _containers.RepeatedCompositeFieldContainer[AgentDescription]
    def __init__(self, agents: _Optional[_Iterable[_Union[AgentDescription, _Mapping]]] = ...) -> None: ...

class CallsRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    def __init__(self, limit: _Optional[int] = ...) -> None: ...

class RecordedCall(_message.Message):
    __slots__ = ("agent_id", "agent_name", "method", "task_id", "state", "queued", "started", "ended", "error_type")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_NAME_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    ENDED_FIELD_NUMBER: _ClassVar[int]
    ERROR_TYPE_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    agent_name: str
    method: str
    task_id: str
    state: str
    queued: float
    started: float
    ended: float
    error_type: str
    def __init__(self, agent_id: _Optional[str] = ..., agent_name: _Optional[str] = ..., method: _Optional[str] = ..., task_id: _Optional[str] = ..., state: _Optional[str] = ..., queued: _Optional[float] = ..., started: _Optional[float] = ..., ended: _Optional[float] = ..., error_type: _Optional[str] = ...) -> None: ...

class CallList(_message.Message):
    __slots__ = ("calls", "now", "forgotten")
    CALLS_FIELD_NUMBER: _ClassVar[int]
    NOW_FIELD_NUMBER: _ClassVar[int]
    FORGOTTEN_FIELD_NUMBER: _ClassVar[int]
    calls: _containers.RepeatedCompositeFieldContainer[RecordedCall]
    now: float
    forgotten: int
    def __init__(self, calls: _Optional[_Iterable[_Union[RecordedCall, _Mapping]]] = ..., now: _Optional[float] = ..., forgotten: _Optional[int] = ...) -> None: ...

class ShutdownRequest(_message.Message):
    __slots__ = ("grace",)
    GRACE_FIELD_NUMBER: _ClassVar[int]
    grace: float
    def __init__(self, grace: _Optional[float] = ...) -> None: ...

class ShutdownReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
