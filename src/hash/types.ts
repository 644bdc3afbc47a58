/** A SHA-256 computation whose state can be exported and resumed anywhere. */
export interface ResumableSha256 {
  update(data: Uint8Array): this;
  /** 'sha256:<hex>' of everything hashed so far; does NOT finalize — update() may continue afterwards. */
  digest(): string;
  /** Canonical, versioned, self-checking state (same format whichever implementation made it). */
  exportState(): Uint8Array;
  /** Total bytes hashed so far. */
  readonly bytesHashed: number;
}
