import time, os, signal
from tests.kit.harness import HOTLINE, make_hotline
from workers.queue import connect

def test_probe(database_url, redis_server, fake_twilio, tmp_path, sessions):
    redis = connect(redis_server.url)
    h = make_hotline(database_url, redis, fake_twilio, tmp_path)
    h.add_supporter("A", "+15550108001")
    redis_server.stop()
    t = time.monotonic(); r = h.sms("+15550109001", HOTLINE, "hi"); print("refused", time.monotonic() - t, r.status_code)
    redis_server.start()
    redis.ping()
    h.clock.stop(); h = make_hotline(database_url, connect(redis_server.url), fake_twilio, tmp_path)
    os.kill(redis_server.process.pid, signal.SIGSTOP)
    try:
        t = time.monotonic(); r = h.sms("+15550109002", HOTLINE, "hi"); print("hung", time.monotonic() - t, r.status_code)
    finally:
        os.kill(redis_server.process.pid, signal.SIGCONT)
    h.clock.stop()
