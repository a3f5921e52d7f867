"""Tools around the app, not part of it: the toy model's builder (`tools.toy`), the synthetic clips
(`tools.clips`) and the benchmark (`tools.bench`). The app never imports them; the tests do."""
