-- wrk script of bench.ceiling: POST pre-signed Moniepoint webhooks, cycling through a file of
-- them (one "<signature>\t<body>" per line). HMAC cannot be computed in wrk's Lua, so the
-- bodies are signed beforehand; each thread starts at its own offset. The requests are
-- formatted once, in init, so wrk spends its CPU on sending them, not on building them.
-- Arguments: <bodies file>. done() prints one JSON line (prefixed) that bench.ceiling reads.

local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("offset", counter * 7919)
end

function init(args)
  requests = {}
  for line in io.lines(args[1]) do
    local signature, body = line:match("^([^\t]+)\t(.*)$")
    requests[#requests + 1] = wrk.format("POST", wrk.path, {
      ["Content-Type"] = "application/json",
      ["X-Moniepoint-Signature"] = signature,
    }, body)
  end
  index = (offset or 0) % #requests
end

function request()
  index = index % #requests + 1
  return requests[index]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'CEILING_RESULT {"requests": %d, "duration_us": %d, "non_2xx": %d, "connect": %d, ' ..
    '"read": %d, "write": %d, "timeout": %d, "p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
