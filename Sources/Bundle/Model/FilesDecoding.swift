import Foundation

// files.json read by hand, as core.json and mm.json are: JSONDecoder took 23 µs a
// descriptor (a 1,000-descriptor restore spent a fifth of its time there). The scalar fields
// every descriptor has are read in place; the nested parts only some kinds have (a socket, a
// terminal, a deleted file's ghost...) go to JSONDecoder one by one. The keys are those the
// synthesized Codable conformances write; ModelEncodingTests holds both to the same result.

extension FileTableImage {
  /// FileTableImage from files.json, as JSONDecoder would decode it (but strict about fields
  /// it does not know, as the other hand-read members are).
  public static func decodeJSON(_ bytes: [UInt8], member: String, strict: Bool = true) throws(BundleError)
    -> FileTableImage
  {
    let decoder = JSONDecoder()
    return try JSONScanner.scan(bytes, member: member, strict: strict) { scanner throws(BundleError) in
      var descriptors: [DescriptorImage]?
      var pipes: [PipeImage]?
      try scanner.object { key, scanner throws(BundleError) in
        switch key {
        case "descriptors":
          descriptors = try scanner.list { scanner throws(BundleError) in
            try DescriptorImage(scanning: &scanner, decoder: decoder)
          }
        case "pipes": pipes = try scanner.decoded([PipeImage].self, with: decoder)
        default: try scanner.unknown(key, in: "the file table")
        }
      }
      guard let descriptors else { throw scanner.missing("descriptors", in: "the file table") }
      guard let pipes else { throw scanner.missing("pipes", in: "the file table") }
      return FileTableImage(descriptors: descriptors, pipes: pipes)
    }
  }
}

extension DescriptorImage {
  /// One descriptor of files.json. Long by nature: one `case` per key, as JSONScanner
  /// decodes in one pass; splitting it would only scatter the key list.
  init(scanning scanner: inout JSONScanner, decoder: JSONDecoder) throws(BundleError) {
    var fd: Int32?
    var kind: Kind?
    var flags: Int32?
    var closeOnExec: Bool?
    var image = DescriptorImage(fd: 0, kind: .path, flags: 0, closeOnExec: false)
    func optional<T: Decodable>(_ type: T.Type, _ scanner: inout JSONScanner) throws(BundleError) -> T? {
      scanner.null() ? nil : try scanner.decoded(type, with: decoder)
    }
    try scanner.object { key, scanner throws(BundleError) in
      switch key {
      case "fd": fd = try scanner.integer()
      case "kind":
        let name = try scanner.string()
        guard let known = Kind(rawValue: name) else {
          throw scanner.invalid("a descriptor of kind \"\(name.prefix(40))\"")
        }
        kind = known
      case "flags": flags = try scanner.integer()
      case "closeOnExec": closeOnExec = try scanner.bool()
      case "path": image.path = scanner.null() ? nil : try scanner.string()
      case "position": image.position = scanner.null() ? nil : try scanner.integer()
      case "mode": image.mode = scanner.null() ? nil : try scanner.integer()
      case "pipe": image.pipe = scanner.null() ? nil : try scanner.integer()
      case "sharesWith": image.sharesWith = scanner.null() ? nil : try scanner.integer()
      case "fifoDeleted": image.fifoDeleted = scanner.null() ? nil : try scanner.bool()
      case "pidfdTarget": image.pidfdTarget = scanner.null() ? nil : try scanner.integer()
      case "sharedDescription": image.sharedDescription = scanner.null() ? nil : try scanner.integer()
      case "outsideRoot": image.outsideRoot = scanner.null() ? nil : try scanner.bool()
      case "anon": image.anon = try optional(AnonFileState.self, &scanner)
      case "epollTargets": image.epollTargets = try optional([EpollTarget].self, &scanner)
      case "memfd": image.memfd = try optional(MemfdImage.self, &scanner)
      case "inotifyWatches": image.inotifyWatches = try optional([InotifyWatch].self, &scanner)
      case "fanotify": image.fanotify = try optional(FanotifyImage.self, &scanner)
      case "ghost": image.ghost = try optional(GhostFileImage.self, &scanner)
      case "fifoAttributes": image.fifoAttributes = try optional(FileAttributes.self, &scanner)
      case "socket": image.socket = try optional(SocketImage.self, &scanner)
      case "locks": image.locks = try optional([FileLockImage].self, &scanner)
      case "mqueue": image.mqueue = try optional(MessageQueueImage.self, &scanner)
      case "asyncOwner": image.asyncOwner = try optional(AsyncOwnerImage.self, &scanner)
      case "pty": image.pty = try optional(PtyImage.self, &scanner)
      case "tun": image.tun = try optional(TunDescriptorImage.self, &scanner)
      default: try scanner.unknown(key, in: "a descriptor")
      }
    }
    guard let fd else { throw scanner.missing("fd", in: "a descriptor") }
    guard let kind else { throw scanner.missing("kind", in: "a descriptor") }
    guard let flags else { throw scanner.missing("flags", in: "a descriptor") }
    guard let closeOnExec else { throw scanner.missing("closeOnExec", in: "a descriptor") }
    (image.fd, image.kind, image.flags, image.closeOnExec) = (fd, kind, flags, closeOnExec)
    self = image
  }
}
