//! Protocol interop: pickles our encoder produces are decoded by ZEO 6.2's own
//! client decoder (`ZEO.asyncio.marshal.pickle_decode`), and error replies are
//! turned into exceptions by the client's `exc_factories`, with the Python types
//! the client code checks. (msgpack is not installed in the pinned venv, so msgpack
//! output is checked byte for byte against captured frames in protocol_replay.rs.)

use crate::common::run_python;
use zeo::protocol::errors::WireError;
use zeo::protocol::handshake::Encoding;
use zeo::protocol::metadata::encode_extension;
use zeo::protocol::reply::TxnHeader;
use zeo::protocol::{
    encode_frame, encode_message, Reply, ReplyValue, ServerCall, StorageInfo, Value, VoteItem,
};
use zeo::storage::{ConflictInfo, Oid, Tid};

const DECODE: &str = r#"
import sys, struct
from ZEO.asyncio.marshal import pickle_decode
from ZEO.asyncio.client import exc_factories
from ZEO.Exceptions import ServerException
data = open(sys.argv[1], 'rb').read()
pos = 0
while pos < len(data):
    (n,) = struct.unpack('>I', data[pos:pos+4]); pos += 4
    msgid, flag, name, args = pickle_decode(data[pos:pos+n]); pos += n
    if name == '.reply' and flag:
        cls, state = args
        f = exc_factories.get(cls)
        exc = f(cls, state) if f else ServerException(cls, state)
        extra = ''
        if hasattr(exc, 'oid'):
            extra = ' oid=%r serials=%r class_name=%r' % (exc.oid, exc.serials, getattr(exc, 'class_name', None))
        print('EXC', type(exc).__module__ + '.' + type(exc).__name__, '|', str(exc), '|', extra)
    else:
        def types(v):
            if isinstance(v, (tuple, list)):
                return type(v).__name__ + '[' + ','.join(types(x) for x in v) + ']'
            if isinstance(v, dict):
                return 'dict{' + ','.join('%s:%s' % (k, types(x)) for k, x in v.items()) + '}'
            return type(v).__name__
        print('MSG', repr(msgid), repr(flag), name, types(args))
"#;

fn tid(n: u64) -> Tid {
    Tid(n)
}

#[test]
fn our_pickles_decode_in_zeo_client() {
    let info = StorageInfo {
        length: 3,
        size: 1 << 33,
        name: "Data.fs".into(),
        supports_undo: true,
        supports_record_iternext: true,
        interfaces: vec![
            ("ZODB.interfaces".into(), "IBlobStorage".into()),
            ("zope.interface".into(), "Interface".into()),
        ],
    };
    let conflict = ConflictInfo {
        oid: Oid(7),
        serials: (tid(0x03f8f8b181111111), tid(0x03f8f8b180000000)),
        class_name: Some("persistent.mapping.PersistentMapping".into()),
    };
    let lb_id = Value::Tuple(vec![
        Value::Bytes(vec![0; 8]),
        Value::Bytes(vec![0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
    ]);
    let msgs = vec![
        Reply::ok(Value::Int(2), ReplyValue::Info(info).to_value()).to_envelope(),
        Reply::ok(
            lb_id.clone(),
            ReplyValue::LoadBefore(Some((b"data".to_vec(), tid(5), None))).to_value(),
        )
        .to_envelope(),
        Reply::ok(
            Value::Int(3),
            ReplyValue::Vote(vec![
                VoteItem::Oid(Oid(1)),
                VoteItem::Conflict {
                    oid: Oid(2),
                    serials: (tid(9), tid(8)),
                    data: b"x".to_vec(),
                },
            ])
            .to_value(),
        )
        .to_envelope(),
        Reply::ok(
            Value::Int(4),
            ReplyValue::IteratorNext(Some(TxnHeader {
                tid: tid(1),
                status: b'p',
                user: b"/ bob".to_vec(),
                description: b"d".to_vec(),
                extension: vec![(Value::str("k"), Value::str("v"))],
            }))
            .to_value(),
        )
        .to_envelope(),
        ServerCall::InvalidateTransaction {
            tid: tid(10),
            oids: vec![Oid(1), Oid(1)],
        }
        .to_envelope(),
        ServerCall::Info {
            length: 1,
            size: 70000,
        }
        .to_envelope(),
        Reply::error(Value::Int(5), WireError::conflict(&conflict)).to_envelope(),
        Reply::error(Value::Int(6), WireError::read_conflict(&conflict)).to_envelope(),
        Reply::error(lb_id, WireError::pos_key(Oid(1))).to_envelope(),
        Reply::error(Value::Int(7), WireError::pos_key_serial(Oid(1), tid(2))).to_envelope(),
        Reply::error(Value::Int(8), WireError::read_only()).to_envelope(),
        Reply::error(
            Value::Int(9),
            WireError::storage_transaction_ids(Value::None, Value::Int(140459743145488)),
        )
        .to_envelope(),
        Reply::error(
            Value::Int(10),
            WireError::multiple_undo(&[
                (Oid(1), "Can't undo an add transaction".into()),
                (Oid(2), "conflict".into()),
            ]),
        )
        .to_envelope(),
        Reply::error(Value::Int(11), WireError::key_error(Value::Int(4242))).to_envelope(),
        Reply::error(Value::Int(12), WireError::type_error("bad size")).to_envelope(),
        Reply::error(Value::Int(13), WireError::value_error("unknown storage: x")).to_envelope(),
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("frames.bin");
    let mut wire = Vec::new();
    for m in &msgs {
        wire.extend(encode_frame(&encode_message(Encoding::Pickle, m).unwrap()).unwrap());
    }
    std::fs::write(&path, wire).unwrap();
    let out = run_python(DECODE, &[path.to_str().unwrap()]);
    assert_eq!(
        out.matches("MSG ").count() + out.matches("EXC ").count(),
        msgs.len(),
        "{out}"
    );
    let expect = [
        "MSG 2 0 .reply dict{length:int,size:int,name:str,supportsUndo:bool,supports_record_iternext:bool,interfaces:tuple[tuple[str,str],tuple[str,str]]}",
        "MSG (b'\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00', b'\\x7f\\xff\\xff\\xff\\xff\\xff\\xff\\xff') 0 .reply tuple[bytes,bytes,NoneType]",
        "MSG 3 0 .reply list[bytes,dict{oid:bytes,serials:tuple[bytes,bytes],data:bytes}]",
        "MSG 4 0 .reply tuple[bytes,str,bytes,bytes,dict{k:str}]",
        "MSG 0 True invalidateTransaction tuple[bytes,list[bytes,bytes]]",
        "MSG 0 True info tuple[dict{length:int,size:int}]",
        "EXC ZODB.POSException.ConflictError | database conflict error (oid 0x07, class persistent.mapping.PersistentMapping, serial this txn started with",
        "EXC ZODB.POSException.ReadConflictError | database read conflict error (oid 0x07, class persistent.mapping.PersistentMapping, serial this txn started with",
        "EXC ZODB.POSException.POSKeyError | 0x01 |",
        "EXC ZODB.POSException.ReadOnlyError |  |",
        "EXC ZODB.POSException.StorageTransactionError | (None, 140459743145488) |",
        "EXC ZODB.POSException.MultipleUndoErrors | Undo error 0x01: Can't undo an add transaction\nUndo error 0x02: conflict |",
        "EXC builtins.KeyError | 4242 |",
        "EXC builtins.TypeError | bad size |",
        "EXC ZEO.Exceptions.ServerException | ('builtins.ValueError', ('unknown storage: x',)) |",
    ];
    let joined = out.clone();
    for e in expect {
        assert!(joined.contains(e), "missing {e:?} in:\n{out}");
    }
    // ConflictError carries oid and serials as bytes.
    assert!(joined.contains(
        "oid=b'\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x07' serials=(b'\\x03\\xf8\\xf8\\xb1\\x81\\x11\\x11\\x11', b'\\x03\\xf8\\xf8\\xb1\\x80\\x00\\x00\\x00') class_name='persistent.mapping.PersistentMapping'"
    ), "{out}");
}

#[test]
fn extension_pickles_load_in_python() {
    let ext = Value::str_dict([
        ("request", Value::str("/counter/increment")),
        ("size_hint", Value::Int(42)),
        ("flags", Value::List(vec![Value::Int(1), Value::Int(2)])),
        ("zoë", Value::Float(1.5)),
        ("big", Value::Int(1 << 70)),
    ]);
    let p = encode_extension(&ext).unwrap();
    let hex: String = p.iter().map(|b| format!("{b:02x}")).collect();
    let out = run_python(
        "import sys, zodbpickle.pickle as p; print(repr(p.loads(bytes.fromhex(sys.argv[1]))))",
        &[&hex],
    );
    assert_eq!(
        out.trim(),
        "{'request': '/counter/increment', 'size_hint': 42, 'flags': [1, 2], 'zoë': 1.5, 'big': 1180591620717411303424}"
    );
    assert!(encode_extension(&Value::Dict(vec![])).unwrap().is_empty());
}
