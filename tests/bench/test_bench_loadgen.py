"""The load generator's HTTP/1.1 client: content-length, chunked and close-delimited bodies, keep-alive reuse."""

from __future__ import annotations

import asyncio

from benchmarks.loadgen import Connection, raw_request

BODY = b'{"ok": true, "data": [1, 2, 3]}'


async def _serve(responses: list[bytes], seen: list[bytes], connections: list[int]):
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            while responses:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                seen.append(await reader.readexactly(length))
                resp = responses.pop(0)
                writer.write(resp)
                await writer.drain()
                low = resp.lower()
                if b"connection: close" in low or (b"content-length" not in low and b"chunked" not in low):
                    break
        except asyncio.IncompleteReadError:
            pass
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def test_client_reads_every_body_framing_and_reuses_the_connection():
    responses = [
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY),
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n" + BODY[:5] + b"\r\n%x\r\n" % (len(BODY) - 5)
        + BODY[5:] + b"\r\n0\r\n\r\n",
        b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\n\r\n" + BODY,  # no length: delimited by the server closing
    ]
    seen: list[bytes] = []
    connections: list[int] = []

    async def main():
        server = await _serve(list(responses), seen, connections)
        port = server.sockets[0].getsockname()[1]
        conn = Connection("127.0.0.1", port)
        out = [await conn.request(raw_request("127.0.0.1", port, "/v1/embeddings", b'{"i": %d}' % i))
               for i in range(4)]
        conn.close()
        server.close()
        await server.wait_closed()
        return out

    out = asyncio.run(main())
    assert out == [(200, BODY), (200, BODY), (429, b"{}"), (200, BODY)]
    assert seen == [b'{"i": 0}', b'{"i": 1}', b'{"i": 2}', b'{"i": 3}']
    assert len(connections) == 2  # first three on one keep-alive connection; reopened after `Connection: close`


def test_client_retries_once_when_an_idle_keep_alive_connection_was_closed():
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
    connections: list[int] = []

    async def main():
        async def handle(reader, writer):
            connections.append(1)
            await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(2)
            writer.write(ok)
            await writer.drain()
            writer.close()  # closes the keep-alive connection right after answering (idle timeout)

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        conn = Connection("127.0.0.1", port)
        first = await conn.request(raw_request("127.0.0.1", port, "/x", b"{}"))
        await asyncio.sleep(0.05)
        second = await conn.request(raw_request("127.0.0.1", port, "/x", b"{}"))
        conn.close()
        server.close()
        await server.wait_closed()
        return first, second

    assert asyncio.run(main()) == ((200, BODY), (200, BODY))
    assert len(connections) == 2


def test_a_cell_runs_its_minimum_requests_and_stops_at_its_cap():
    import time

    from benchmarks.loadgen import LoadSpec, Phase, _done

    spec = LoadSpec(base_url="http://127.0.0.1:1", model="m", kind="embed", api="jina", clients=1,
                    inputs_per_request=1, texts=["x"], duration_s=0.0, min_requests=3, max_duration_s=60.0)
    now, phase = time.perf_counter(), Phase(latencies=[0.1, 0.1])
    assert not _done(spec, now, phase)  # 2 of 3 requests: go on
    phase.latencies.append(0.1)
    assert _done(spec, now, phase)
    assert _done(spec, now - 61.0, Phase())  # past the cap: stop whatever the count
    spec.duration_s = 30.0
    assert not _done(spec, now, phase)  # enough requests, but not the minimum time yet
