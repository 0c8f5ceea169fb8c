import Bundle
import Linux

/// What each descriptor kind provides beside its capture: one type per kind, in the kind's
/// own file under Files/ (with its capture as an extension of ``FileCapture`` and its restore
/// as an extension of ``FileBatch``), registered in ``DescriptorKinds/handler(for:)``.
///
/// Capture is not part of it: a descriptor is recognised by its /proc link and its stat in
/// an order that matters (``FileCapture/image(log:)``), and kinds need different facts.
protocol DescriptorKindHandler {
  /// Checks a descriptor of this kind read from a bundle before it is used
  /// (``LoadedBundle/validate(_:)``): `pipes` are the pipes of the task's image; what is
  /// wrong is thrown as `bad(what)`.
  static func validate(_ descriptor: DescriptorImage, pipes: Set<UInt64>, bad: (String) -> CKError) throws(CKError)
  /// Queues what makes the descriptor's open file description again at a high number
  /// (``FileBatch/prepareInBatches()``), unless it was made before the batches.
  static func prepare(_ descriptor: DescriptorImage, in files: FileBatch) throws
  /// What the descriptor is, for `ckcont inspect` (flags and sharing are added after).
  static func describe(_ descriptor: DescriptorImage) -> String
}

/// The registration table of descriptor kinds: a switch, so that the compiler makes every
/// kind of the model (``DescriptorImage/Kind``) have its handler.
enum DescriptorKinds {
  static func handler(for kind: DescriptorImage.Kind) -> any DescriptorKindHandler.Type {
    switch kind {
    case .path: RegularFiles.self
    case .deleted: DeletedFiles.self
    case .pipe: Pipes.self
    case .fifo: Fifos.self
    case .socket: Sockets.self
    case .eventfd, .signalfd, .timerfd: EventFiles.self
    case .epoll: Epoll.self
    case .inotify: Inotify.self
    case .fanotify: Fanotify.self
    case .memfd: Memfds.self
    case .mqueue: MessageQueues.self
    case .pidfd: Pidfds.self
    case .pty: TerminalDescriptors.self
    case .tun: TunDescriptors.self
    }
  }
}
