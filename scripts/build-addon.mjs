// Placeholder: replaced by the hashing work (builds native/sha256 with node-gyp).
