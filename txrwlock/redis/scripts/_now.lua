local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
