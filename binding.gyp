{
  "targets": [
    {
      "target_name": "blobcore_sha256",
      "sources": ["native/sha256.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-std=c11"],
      "conditions": [
        ["OS=='linux'", { "ldflags": ["-Wl,-z,now"] }],
        ["OS=='mac'", { "xcode_settings": { "OTHER_LDFLAGS": ["-Wl,-bind_at_load"] } }]
      ]
    },
    {
      "target_name": "blobcore_buffers",
      "sources": ["native/buffer-pool.c", "native/read-into.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-std=c11"]
    }
  ]
}
