import CKShim

/// The calls that keep an i386 task's state the compat way: made through `int $0x80` (the
/// ia32 entry, from 64-bit code too), which is what tells the kernel to keep it so.
extension RemoteCall {
  /// A call of the i386 ABI, by its number.
  static func i386(_ number: Int, _ arguments: [any RemoteArgument], label: String) -> RemoteCall {
    var call = RemoteCall(number, arguments, label: label)
    call.i386 = true
    return call
  }

  /// The compat rt_sigaction(2) of `signal`: the struct compat_sigaction at `action` (a
  /// 32-bit address); the kernel marks the handler for ia32 signal frames (SA_IA32_ABI).
  public static func i386RtSigaction(_ signal: Int32, action: UInt64) -> RemoteCall {
    .i386(
      I386SyscallNumber.rtSigaction, [signal, action, UInt64(0), UInt64(8)], label: "compat rt_sigaction(\(signal))")
  }

  /// The compat set_robust_list(2): the thread's compat slot, a 12-byte list head.
  public static func i386SetRobustList(_ head: UInt64) -> RemoteCall {
    .i386(I386SyscallNumber.setRobustList, [head, UInt64(12)], label: "compat set_robust_list")
  }

  /// arch_prctl(ARCH_MAP_VDSO_32, `address`): the 32-bit vDSO image, [vvar] first, mapped at
  /// `address`; it answers the image's size.
  public static func mapI386VDSO(at address: UInt64) -> RemoteCall {
    RemoteCall(
      SyscallNumber.archPrctl, [UInt64(CK_ARCH_MAP_VDSO_32), address],
      label: "arch_prctl(ARCH_MAP_VDSO_32, \(hex(address)))")
  }
}
