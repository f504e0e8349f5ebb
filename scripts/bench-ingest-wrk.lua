-- wrk script: Vapi end-of-call reports of about 8 KB, each with a unique call id.
local counter = 0
local line = "User: I was hoping to get someone out this week to look at the panel, it keeps tripping when the dryer runs.\\nAI: I can help with that. Let me check what we have open.\\n"
local transcript = string.rep(line, 48)

function setup(thread)
  thread:set("tid", tostring(math.random(1, 1000000000)))
end

function init(args)
  prefix = tid
end

request = function()
  counter = counter + 1
  local id = prefix .. "-" .. counter
  local number = string.format("+1415555%04d", counter % 10000)
  local body = '{"message":{"type":"end-of-call-report","endedReason":"customer-ended-call",'
    .. '"startedAt":"2026-01-06T14:02:11.020Z","endedAt":"2026-01-06T14:05:29.771Z",'
    .. '"call":{"id":"' .. id .. '","type":"inboundPhoneCall","customer":{"number":"' .. number .. '"}},'
    .. '"phoneNumber":{"number":"+15715550100"},'
    .. '"artifact":{"transcript":"' .. transcript .. '","recordingUrl":"https://example.com/r.wav"},'
    .. '"analysis":{"summary":"Panel inspection requested.","structuredData":{"caller_name":"Bench Caller","sentiment":"neutral"},"successEvaluation":"true"}}}'
  return wrk.format("POST", "/webhooks/vapi", {["Content-Type"] = "application/json", ["X-Vapi-Secret"] = "bench-secret"}, body)
end

done = function(summary, latency, requests)
  io.write(string.format("requests %d, non-2xx %d, errors %d\n", summary.requests, summary.status and 0 or 0, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
  for _, p in pairs({50, 90, 99, 99.9}) do
    io.write(string.format("latency p%s %.2f ms\n", p, latency:percentile(p) / 1000))
  end
end
