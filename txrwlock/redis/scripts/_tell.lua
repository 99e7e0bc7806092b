-- Tell who may go now, if anyone.
if freed and not w then
  if head then
    if redis.call('EXISTS', holders) == 0 then redis.call('PUBLISH', channel, head) end
  elseif readersMayGo and redis.call('DEL', readers) == 1 then
    redis.call('PUBLISH', channel, '*')
  end
end
return result
