"""The flow table: who opened a flow, per-direction counts, TCP reassembly and its anomalies, reuse, and emission."""
from __future__ import annotations

from harness.observe.decode import ACK, PSH, SYN
from harness.observe.flows import SHORT_TIMEOUT, MAX_OOO_SEGMENTS, FlowTable, build_flows
from harness.observe.model import STREAM_CAP, Chunk, Chunks, chunk_columns


def test_a_whole_connection(build):
    talk = build.Talk()
    pkts = talk.handshake() + [talk.send(0, b"GET / HTTP/1.0\r\n\r\n"), talk.ack(1), talk.send(1, b"HTTP/1.0 200"),
                               talk.send(1, b" OK\r\n"), talk.ack(0)] + talk.close()
    (f,) = build.all_flows(pkts)
    assert f.id == "tcp 10.0.0.1:40000 > 10.0.0.2:80"
    assert (f.proto, f.src, f.dst, f.src_ip, f.dport) == ("tcp", "10.0.0.1:40000", "10.0.0.2:80", "10.0.0.1", 80)
    assert f.handshake
    assert f.packets == [6, 5]
    assert f.bytes == [sum(p.wire_len for p in pkts if p.src == "10.0.0.1"),
                       sum(p.wire_len for p in pkts if p.src == "10.0.0.2")]
    assert bytes(f.payload[0]) == b"GET / HTTP/1.0\r\n\r\n" and bytes(f.payload[1]) == b"HTTP/1.0 200 OK\r\n"
    assert f.payload_bytes == [18, 17] and f.truncated == [False, False]
    assert f.chunks == [Chunk(pkts[3].time, 0, 0, 18), Chunk(pkts[5].time, 1, 0, 12), Chunk(pkts[6].time, 1, 12, 5)]
    assert (f.first_seen, f.last_seen) == (pkts[0].time, pkts[-1].time)
    assert not f.anomalies


def test_syn_ack_first_means_its_receiver_opened(build):
    talk = build.Talk()
    syn, synack, ack = talk.handshake()
    (f,) = build.all_flows([synack, ack, talk.send(0, b"hi")])
    assert f.src == "10.0.0.1:40000" and not f.handshake
    assert f.packets == [2, 1] and bytes(f.payload[0]) == b"hi"


def test_mid_stream_flow_starts_with_the_first_sender_and_its_first_data(build):
    talk = build.Talk(isn=(0x12345678, 0x9ABCDEF0))
    talk.handshake()  # not seen
    pkts = [talk.send(1, b"banner"), talk.send(0, b"hello"), talk.send(1, b" more")]
    (f,) = build.all_flows(pkts)
    assert f.src == "10.0.0.2:80" and f.id == "tcp 10.0.0.2:80 > 10.0.0.1:40000" and not f.handshake
    assert bytes(f.payload[0]) == b"banner more" and bytes(f.payload[1]) == b"hello"


def test_out_of_order_segments_wait_for_the_hole(build):
    talk = build.Talk()
    pkts = talk.handshake()
    a = talk.send(0, b"aaaa")
    b = talk.send(0, b"bbbb")
    c = talk.send(0, b"cccc")
    (f,) = build.all_flows(pkts + [c, b, a])
    assert bytes(f.payload[0]) == b"aaaabbbbcccc"
    assert f.chunks == [Chunk(a.time, 0, 0, 4), Chunk(b.time, 0, 4, 4), Chunk(c.time, 0, 8, 4)]
    assert not f.anomalies


def test_retransmissions_consistent_and_inconsistent(build):
    talk = build.Talk()
    pkts = talk.handshake()
    first = talk.send(0, b"hello world")
    same = talk.send(0, b"hello world", seq=first.seq, advance=False)
    forged = talk.send(0, b"HELLO", seq=first.seq, advance=False)
    partial = talk.send(0, b"worLD and more", seq=first.seq + 6)  # 5 old bytes (2 differ), 9 new
    (f,) = build.all_flows(pkts + [first, same, forged, partial])
    assert bytes(f.payload[0]) == b"hello world and more"  # the first copy wins
    assert f.anomalies["retransmission"] == 3
    assert f.anomalies["overlap-inconsistent"] == 2
    assert f.chunks[-1] == Chunk(partial.time, 0, 11, 9)


def test_a_hole_that_never_fills_is_skipped_at_flow_end(build):
    talk = build.Talk()
    pkts = talk.handshake() + [talk.send(0, b"before")]
    talk.skip(0, 100)
    pkts += [talk.send(0, b"after")]
    (f,) = build.all_flows(pkts)
    assert bytes(f.payload[0]) == b"beforeafter"
    assert f.anomalies["gap"] == 1 and f.anomalies["missed-bytes"] == 100
    assert f.truncated == [True, False] and f.payload_bytes[0] == 11
    assert f.chunks[-1] == Chunk(pkts[-1].time, 0, 6, 5)


def test_a_full_reorder_buffer_gives_up_on_the_hole(build):
    talk = build.Talk()
    pkts = talk.handshake()
    talk.skip(0, 10)
    later = [talk.send(0, bytes([65 + i % 26]) * 10) for i in range(MAX_OOO_SEGMENTS + 1)]
    table = FlowTable()
    for p in pkts + later:
        table.add(p)
    flow = table._table[(6, "10.0.0.1", 40000, "10.0.0.2", 80)][0].flow
    assert flow.payload_bytes[0] == 10 * (MAX_OOO_SEGMENTS + 1)  # delivered before the flow ended
    assert flow.anomalies["missed-bytes"] == 10


def test_an_ack_past_the_hole_gives_up_on_it(build):
    talk = build.Talk()
    pkts = talk.handshake()
    talk.skip(0, 10)
    late = talk.send(0, b"after the hole")
    table = FlowTable()
    for p in pkts + [late]:
        table.add(p)
    flow = table._table[(6, "10.0.0.1", 40000, "10.0.0.2", 80)][0].flow
    assert flow.payload_bytes[0] == 0
    table.add(talk.ack(1))  # the server acknowledges everything: the hole is lost for good
    assert bytes(flow.payload[0]) == b"after the hole" and flow.anomalies["missed-bytes"] == 10


def test_sequence_numbers_wrap(build):
    talk = build.Talk(isn=(0xFFFFFFF0, 0xFFFFFFFF))
    pkts = talk.handshake() + [talk.send(0, b"x" * 100), talk.send(0, b"y" * 100), talk.send(1, b"z" * 50)]
    resent = talk.send(0, b"y" * 100, seq=pkts[4].seq, advance=False)
    (f,) = build.all_flows(pkts + [resent] + talk.close())
    assert pkts[4].seq < pkts[3].seq  # wrapped
    assert bytes(f.payload[0]) == b"x" * 100 + b"y" * 100 and bytes(f.payload[1]) == b"z" * 50
    assert f.anomalies == {"retransmission": 1}


def test_reuse_after_fin_rst_and_idle_gets_numbered_ids(build):
    pkts = []
    t = 0.0
    for isn, end in [(1000, "fin"), (50_000, "rst"), (90_000, "idle"), (130_000, "fin")]:
        talk = build.Talk(isn=(isn, isn * 3), t0=t)
        pkts += talk.handshake() + [talk.send(0, b"data"), talk.send(1, b"reply")]
        pkts += talk.close() if end == "fin" else [talk.rst(0)] if end == "rst" else []
        t = talk.t + (400.0 if end == "idle" else 1.0)
    flows = sorted(build.all_flows(pkts), key=lambda f: f.first_seen)
    base = "tcp 10.0.0.1:40000 > 10.0.0.2:80"
    assert [f.id for f in flows] == [base, base + "#2", base + "#3", base + "#4"]
    assert [f.packets for f in flows] == [[5, 3], [4, 2], [3, 2], [5, 3]]
    assert [bytes(f.payload[1]) for f in flows] == [b"reply"] * 4


def test_a_new_syn_on_a_busy_tuple_without_close_is_a_new_connection(build):
    a = build.Talk(isn=(1000, 2000))
    pkts = a.handshake() + [a.send(0, b"one")]
    b = build.Talk(isn=(777_777, 888_888), t0=a.t + 1)
    pkts += b.handshake() + [b.send(0, b"two")]
    resent_syn = build.Talk(isn=(777_777, 0), t0=b.t + 1).handshake()[0]
    flows = build.all_flows(pkts + [resent_syn])
    assert sorted(f.id[-2:] for f in flows) == ["#2", "80"]
    assert sorted(bytes(f.payload[0]) for f in flows) == [b"one", b"two"]


def test_a_connection_attempt_times_out_sooner_than_a_connection(build):
    """An unanswered SYN (a scan's probe) or any UDP flow leaves after SHORT_TIMEOUT idle; a packet later
    opens a new flow. A TCP connection that was answered, or that carried data, keeps the long idle timeout."""
    syn = build.Talk(cli=("10.0.0.1", 5000), isn=(77, 0)).handshake()[0]
    probes = [syn._replace(time=t) for t in (0.0, 31.0, 31.0 + SHORT_TIMEOUT + 1)]
    flows = sorted(build.all_flows(probes), key=lambda f: f.first_seen)
    assert [(f.id[-2:], f.packets) for f in flows] == [("80", [2, 0]), ("#2", [1, 0])]
    answered = build.Talk(cli=("10.0.0.1", 5001))
    quiet = answered.handshake()
    quiet.append(answered.ack(0)._replace(time=answered.t + 200.0))  # 200 s idle, under IDLE_TIMEOUT
    one_way = build.packet(0.0, "10.0.0.1", 5002, "10.0.0.2", 80, flags=PSH | ACK, payload=b"x")
    one_way_later = one_way._replace(time=200.0, seq=1)
    flows = build.all_flows(quiet + [one_way, one_way_later])
    assert sorted(f.sport for f in flows) == [5001, 5002]
    # UDP: a probe nobody answers leaves after SHORT_TIMEOUT, and so does an answered exchange (Zeek's UDP
    # inactivity timeout); one that goes on within it stays one flow.
    udp = [build.packet(t, "10.0.0.1", 5003, "10.0.0.2", 161, proto=17, payload=b"probe")
           for t in (0.0, SHORT_TIMEOUT + 1)]
    answered = [build.packet(0.0, "10.0.0.1", 5004, "10.0.0.2", 53, proto=17, payload=b"q"),
                build.packet(0.1, "10.0.0.2", 53, "10.0.0.1", 5004, proto=17, payload=b"a"),
                build.packet(SHORT_TIMEOUT + 1, "10.0.0.1", 5004, "10.0.0.2", 53, proto=17, payload=b"q2")]
    kept = [build.packet(t, "10.0.0.1", 5005, "10.0.0.2", 4500, proto=17, payload=b"keepalive")
            for t in (0.0, 25.0, 50.0, 75.0, 100.0)]  # a NAT-T keepalive every 25 s
    flows = build.all_flows(udp + answered + kept)
    assert sorted((f.sport, f.total_packets) for f in flows) == [(5003, 1), (5003, 1), (5004, 1), (5004, 2),
                                                                 (5005, 5)]
    # A packet after the timeout but before the table's sweep reached the flow splits it just the same.
    table = FlowTable(short_timeout=5.0)
    flows = list(build_flows([syn, syn._replace(time=syn.time + 5.5)], table))
    assert len(flows) == 2


def test_stragglers_after_close_join_the_closed_flow(build):
    talk = build.Talk()
    pkts = talk.handshake() + [talk.send(0, b"x")] + talk.close() + [talk.ack(1)]
    (f,) = build.all_flows(pkts)
    assert f.packets == [5, 3]


def test_udp_first_sender_opens_and_every_datagram_is_a_chunk(build):
    pk = [build.packet(1.0, "10.0.0.9", 5353, "10.0.0.1", 53, proto=17, payload=b"q1"),
          build.packet(1.1, "10.0.0.1", 53, "10.0.0.9", 5353, proto=17, payload=b"answer"),
          build.packet(1.2, "10.0.0.9", 5353, "10.0.0.1", 53, proto=17, payload=b""),
          build.packet(1.3, "10.0.0.9", 5353, "10.0.0.1", 53, proto=17, payload=b"q2", paylen=10),
          build.packet(401.0, "10.0.0.9", 5353, "10.0.0.1", 53, proto=17, payload=b"later")]
    f, g = build.all_flows(pk)
    assert f.id == "udp 10.0.0.9:5353 > 10.0.0.1:53" and g.id == f.id + "#2"
    assert f.packets == [3, 1] and bytes(f.payload[0]) == b"q1q2" and f.payload_bytes == [4, 6]
    assert [(c.direction, c.offset, c.length) for c in f.chunks] == [(0, 0, 2), (1, 0, 6), (0, 2, 0), (0, 2, 2)]
    assert f.anomalies == {"gap": 1, "missed-bytes": 8} and f.truncated == [True, False]


def test_stream_cap(build):
    talk = build.Talk()
    block = b"z" * 65536
    pkts = talk.handshake() + [talk.send(0, block) for _ in range(STREAM_CAP // len(block) + 2)]
    (f,) = build.all_flows(pkts)
    assert len(f.payload[0]) == STREAM_CAP and f.truncated[0]
    assert f.payload_bytes[0] == len(block) * (STREAM_CAP // len(block) + 2)
    assert f.chunks[-1].offset == f.payload_bytes[0] - len(block)


def test_bytes_cut_by_the_snaplen_are_a_gap(build):
    talk = build.Talk()
    pkts = talk.handshake() + [talk.send(0, b"head", paylen=1000), talk.send(0, b"next")]
    (f,) = build.all_flows(pkts)
    assert bytes(f.payload[0]) == b"headnext"
    assert f.anomalies == {"gap": 1, "missed-bytes": 996} and f.truncated[0]


def test_packet_anomalies_and_fragment_frames_are_counted(build):
    p = build.packet(1.0, "10.0.0.1", 1, "10.0.0.2", 2, proto=17, payload=b"x", frames=3, wire=3000,
                     anomalies=("fragment-overlap-inconsistent",))
    (f,) = build.all_flows([p])
    assert f.packets == [3, 0] and f.bytes == [3000, 0] and f.anomalies == {"fragment-overlap-inconsistent": 1}


def test_flows_are_emitted_as_they_finish_and_leave_the_table(build):
    consumed = []

    def packets():
        t = 0.0
        for i in range(50):
            talk = build.Talk(cli=("10.0.0.1", 1000 + i), t0=t)
            for p in talk.handshake() + [talk.send(0, b"x" * 100)] + talk.close():
                consumed.append(p)
                yield p
            t = talk.t + 10.0  # past the close linger

    table = FlowTable()
    seen = []
    for flow in build_flows(packets(), table):
        seen.append((flow.sport, len(consumed)))
        assert table.active <= 2
    assert len(seen) == 50
    assert seen[0][1] < 20  # the first flow came out long before the input ended
    assert table.active == 0 and not table._table


def test_identical_endpoints_do_not_confuse_the_table(build):
    p = build.packet(1.0, "48.48.48.48", 12336, "48.48.48.48", 12336, flags=PSH | ACK, payload=b"abc")
    q = build.packet(2.0, "48.48.48.48", 12336, "48.48.48.48", 12336, flags=SYN)
    flows = build.all_flows([p, q, p])
    assert sum(f.total_packets for f in flows) == 3


def test_too_many_open_flows_evicts_the_oldest(build):
    pk = [build.packet(float(i), "10.0.0.1", 1000 + i, "10.0.0.2", 53, proto=17, payload=b"q") for i in range(100)]
    flows = build.all_flows(pk, max_active=20)
    assert len(flows) == 100 and sum(f.anomalies["evicted"] for f in flows) > 0
    assert {f.sport for f in flows} == set(range(1000, 1100))


def test_ack_flag_only_packets_without_data(build):
    talk = build.Talk()
    pkts = talk.handshake() + [talk.ack(0) for _ in range(5)]
    (f,) = build.all_flows(pkts)
    assert f.packets == [7, 1] and f.chunks == [] and not f.anomalies
    assert pkts[1].flags == SYN | ACK


def test_a_flows_chunks_read_like_a_list_of_chunk():
    """Kept in typed columns (a transfer has a million chunks), read as Chunk objects: equal to the same list,
    indexed from either end, sliced, reversed; `chunk_columns` gives the same columns for a plain list."""
    listed = [Chunk(1.0, 0, 0, 5), Chunk(2.5, 1, 0, 7), Chunk(3.0, 0, 5, 2)]
    chunks = Chunks(listed)
    assert chunks == listed and list(chunks) == listed and len(chunks) == 3
    assert chunks[-1] == Chunk(3.0, 0, 5, 2) and chunks[1:] == listed[1:] and chunks != listed[:2]
    assert Chunks() == [] and not Chunks() and chunk_columns(Chunks()) == ((), (), (), ())
    for given in (chunks, listed):
        columns = [list(column) for column in chunk_columns(given)]
        assert columns == [[1.0, 2.5, 3.0], [0, 1, 0], [0, 0, 5], [5, 7, 2]]
    chunks.reverse()
    assert chunks == listed[::-1]
