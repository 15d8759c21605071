/** Whether `host` (an address or host name; `[::1]` style accepted) is this machine's loopback. */
export const isLoopback = (host: string): boolean => {
  const name = host.replace(/^\[(.*)\]$/, "$1").toLowerCase()
  return name === "localhost" || name === "::1" || /^127(\.\d{1,3}){3}$/.test(name)
}
