"""Loopback vendors that behave like the real APIs deskmark calls (status codes, headers,
multipart rules, auth, rate limits): used by `deskmark demo`, the tests and the benchmarks."""
