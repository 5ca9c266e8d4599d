use super::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// A connected pair: ours as Pingora's stream, and the far end.
async fn pair(listener: &TcpListener) -> (Stream, tokio::net::TcpStream) {
    let addr = listener.local_addr().unwrap();
    let ours = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (theirs, _) = listener.accept().await.unwrap();
    (
        Box::new(pingora::protocols::l4::stream::Stream::from(ours)),
        theirs,
    )
}

#[tokio::test]
async fn a_quiet_connection_is_open_and_a_closed_or_talking_one_is_not() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    // The reactor sees the peer's close or bytes at its next turn: poll until then.
    let until_not_open = |mut stream: Stream| async move {
        let deadline = Instant::now() + Duration::from_secs(10);
        while still_open(&mut stream) {
            assert!(Instant::now() < deadline, "still looks open");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let (mut quiet, _theirs) = pair(&listener).await;

    let (closed, theirs) = pair(&listener).await;
    drop(theirs);
    until_not_open(closed).await;

    let (talking, mut theirs) = pair(&listener).await;
    theirs.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
    until_not_open(talking).await;

    // The reactor has turned since `quiet` was made; nothing arrived on it.
    assert!(still_open(&mut quiet));
}

/// Idle entries for `addr`, aged 0, 1, 2… seconds past one start, and their stream ids.
struct Entries {
    listener: TcpListener,
    start: Instant,
    far: Vec<tokio::net::TcpStream>,
}

impl Entries {
    async fn new() -> Entries {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (start, far) = (Instant::now(), Vec::new());
        Entries {
            listener,
            start,
            far,
        }
    }

    async fn make(&mut self, addr: &SocketAddr, age: u64) -> (Idle, u64) {
        let (stream, theirs) = pair(&self.listener).await;
        self.far.push(theirs);
        let id = stream.id() as u64;
        let since = self.start + Duration::from_secs(age);
        let entry = Idle {
            addr: addr.clone(),
            stream,
            since,
            expires: None,
            health: None,
        };
        (entry, id)
    }
}

fn id(entry: Option<Idle>) -> Option<u64> {
    entry.map(|e| e.stream.id() as u64)
}

fn addrs() -> (SocketAddr, SocketAddr) {
    let inet = |port: u16| SocketAddr::Inet(([127, 0, 0, 1], port).into());
    (inet(1), inet(2))
}

#[tokio::test]
async fn the_table_hands_out_the_newest_for_the_key_and_address_and_evicts_the_oldest() {
    let ((a, b), mut entries) = (addrs(), Entries::new().await);
    let mut table = Table::with_max(3);
    let (mut ids, mut evicted) = (Vec::new(), Vec::new());
    for (age, key, addr) in [(0, 2, &b), (1, 1, &a), (2, 1, &a), (3, 1, &a)] {
        let (entry, made) = entries.make(addr, age).await;
        ids.push(made);
        evicted.push(id(table.keep(key, entry)));
    }

    // Full at 3: the fourth evicted the oldest of all, under another key.
    assert_eq!(evicted, [None, None, None, Some(ids[0])]);
    assert_eq!(table.len, 3);
    assert_eq!(id(table.take(1, &b)), None, "another address, same key");
    assert_eq!(id(table.take(1, &a)), Some(ids[3]));
    assert_eq!(id(table.take(1, &a)), Some(ids[2]));
    assert_eq!(id(table.take(1, &a)), Some(ids[1]));
    assert_eq!(id(table.take(1, &a)), None);
    assert_eq!(table.len, 0);

    let (entry, _) = entries.make(&a, 4).await;
    assert!(
        Table::default().keep(1, entry).is_some(),
        "a table of 0 keeps nothing"
    );
}

#[tokio::test]
async fn a_checked_list_goes_back_in_front_of_what_was_kept_meanwhile() {
    let ((a, _), mut entries) = (addrs(), Entries::new().await);
    let mut table = Table::with_max(3);
    let mut ids = Vec::new();
    for age in [1, 2] {
        let (entry, made) = entries.make(&a, age).await;
        ids.push(made);
        assert!(table.keep(1, entry).is_none());
    }
    let checking = table.take_list(1);
    assert_eq!((checking.len(), table.len), (2, 0));
    let (meanwhile, newest) = entries.make(&a, 5).await;
    assert!(table.keep(1, meanwhile).is_none());

    assert!(table.merge(1, checking).is_empty());
    assert_eq!(table.len, 3);
    // Over `max` after a merge: the oldest goes, here the one just put back.
    let (oldest, oldest_id) = entries.make(&a, 0).await;
    let evicted = table.merge(1, VecDeque::from([oldest]));
    assert_eq!(
        evicted
            .into_iter()
            .map(|e| e.stream.id() as u64)
            .collect::<Vec<_>>(),
        [oldest_id]
    );

    assert_eq!(id(table.take(1, &a)), Some(newest));
    assert_eq!(id(table.take(1, &a)), Some(ids[1]));
    assert_eq!(id(table.take(1, &a)), Some(ids[0]));
    assert!(table.take_list(7).is_empty());
    assert_eq!(table.len, 0);
}
