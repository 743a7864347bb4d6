-- Send the requests of a file written by bench/load.py, each thread its own share, in order.
-- Each line is: method TAB path TAB headers (joined by the unit separator, 0x1F) TAB body.
-- When a thread runs out of lines it starts again from its first one.
local script_dir = debug.getinfo(1, "S").source:match("@(.*/)") or "./"
dofile(script_dir .. "report.lua")

local next_thread_id = 0
function setup(thread)
  thread:set("thread_id", next_thread_id)
  next_thread_id = next_thread_id + 1
end

local prepared = {}
local sent = 0

function init(args)
  local path, thread_count = args[1], tonumber(args[2])
  local index = 0
  for line in io.lines(path) do
    if index % thread_count == thread_id then
      local method, target, header_text, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
      local headers = {}
      for header in header_text:gmatch("[^\31]+") do
        local name, value = header:match("^([^:]+):%s*(.*)$")
        headers[name] = value
      end
      prepared[#prepared + 1] = wrk.format(method, target, headers, body)
    end
    index = index + 1
  end
end

function request()
  sent = sent + 1
  return prepared[(sent - 1) % #prepared + 1]
end
