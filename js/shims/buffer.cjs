// Stand-in for node's `buffer` in the browser bundle: plotly's typedarray-pool only asks Buffer.isBuffer and
// allocates node Buffers when asked for them by name, which the Explorer's traces never do.
module.exports = {
  Buffer: {
    isBuffer: () => false,
    alloc: (n) => new Uint8Array(n),
    allocUnsafe: (n) => new Uint8Array(n),
    from: (a) => Uint8Array.from(a),
  },
};
