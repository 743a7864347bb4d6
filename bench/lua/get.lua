-- GET one path on every request, with the headers passed as arguments ("Name: value" each).
local script_dir = debug.getinfo(1, "S").source:match("@(.*/)") or "./"
dofile(script_dir .. "report.lua")

function init(args)
  for _, header in ipairs(args) do
    local name, value = header:match("^([^:]+):%s*(.*)$")
    wrk.headers[name] = value
  end
end
