-- Tell who may go now, if anyone, on the channels of their clients only.
if freed and not w then
  if head then
    if redis.call('EXISTS', holders) == 0 then
      redis.call('PUBLISH', channel .. ':' .. string.match(head, '^[^:]*'), head)
    end
  elseif readersMayGo then
    local clients = redis.call('SMEMBERS', readers)
    if #clients > 0 then
      redis.call('DEL', readers)
      for i = 1, #clients do redis.call('PUBLISH', channel .. ':' .. clients[i], '*') end
    end
  end
end
return result
