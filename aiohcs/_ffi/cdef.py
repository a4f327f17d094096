"""The one C declaration of the HCS API (computecore + computestorage).

Written from the fact sheet (API.md §2-§3, Appendix A) in our own words.  Types
are Linux-friendly on purpose: ``char16_t`` rather than ``wchar_t`` (32-bit on
Linux), enums as fixed-width integers (some HCS values do not fit a signed
``int``).  ``WINAPI`` is kept on every prototype and on both callback typedefs:
cffi ignores it except on 32-bit Windows, where it selects ``__stdcall``.

The text is split so the compiled callback module (build_callbacks.py) can reuse
just the types it needs, and so tests can parse the prototypes.
"""

from __future__ import annotations

# Primitive Windows types and the HCS handle/enum types.
CDEF_TYPES = r"""
typedef int32_t  HRESULT;
typedef uint32_t DWORD;
typedef uint64_t UINT64;
typedef char16_t WCHAR;
typedef const WCHAR *PCWSTR;
typedef WCHAR *PWSTR;
typedef void *HANDLE;
typedef struct _SECURITY_DESCRIPTOR SECURITY_DESCRIPTOR;

typedef void *HCS_SYSTEM;
typedef void *HCS_PROCESS;
typedef void *HCS_OPERATION;
typedef void *HCS_CALLBACK;

typedef int32_t  HCS_OPERATION_TYPE;
typedef uint32_t HCS_EVENT_TYPE;
typedef uint32_t HCS_EVENT_OPTIONS;
typedef uint32_t HCS_OPERATION_OPTIONS;
typedef uint32_t HCS_RESOURCE_TYPE;
typedef uint32_t HCS_CREATE_OPTIONS;

typedef struct HCS_EVENT {
    HCS_EVENT_TYPE Type;
    PCWSTR         EventData;
    HCS_OPERATION  Operation;
} HCS_EVENT;

typedef struct HCS_PROCESS_INFORMATION {
    DWORD  ProcessId;
    DWORD  Reserved;
    HANDLE StdInput;
    HANDLE StdOutput;
    HANDLE StdError;
} HCS_PROCESS_INFORMATION;

typedef void (WINAPI *HCS_OPERATION_COMPLETION)(HCS_OPERATION operation, void *context);
typedef void (WINAPI *HCS_EVENT_CALLBACK)(HCS_EVENT *event, void *context);

typedef struct HCS_CREATE_OPTIONS_1 {
    HCS_CREATE_OPTIONS   Version;
    HANDLE               UserToken;
    SECURITY_DESCRIPTOR *SecurityDescriptor;
    HCS_EVENT_OPTIONS    CallbackOptions;
    void                *CallbackContext;
    HCS_EVENT_CALLBACK   Callback;
} HCS_CREATE_OPTIONS_1;
"""

# The 60 entry points exported by computecore.dll (API.md §3.1-§3.6).
CDEF_CORE_FUNCTIONS = r"""
/* operations */
HCS_OPERATION WINAPI HcsCreateOperation(const void *context, HCS_OPERATION_COMPLETION callback);
HCS_OPERATION WINAPI HcsCreateOperationWithNotifications(HCS_OPERATION_OPTIONS eventTypes,
    const void *context, HCS_EVENT_CALLBACK callback);
void WINAPI HcsCloseOperation(HCS_OPERATION operation);
void * WINAPI HcsGetOperationContext(HCS_OPERATION operation);
HRESULT WINAPI HcsSetOperationContext(HCS_OPERATION operation, const void *context);
HCS_SYSTEM WINAPI HcsGetComputeSystemFromOperation(HCS_OPERATION operation);
HCS_PROCESS WINAPI HcsGetProcessFromOperation(HCS_OPERATION operation);
HCS_OPERATION_TYPE WINAPI HcsGetOperationType(HCS_OPERATION operation);
UINT64 WINAPI HcsGetOperationId(HCS_OPERATION operation);
HRESULT WINAPI HcsGetOperationResult(HCS_OPERATION operation, PWSTR *resultDocument);
HRESULT WINAPI HcsGetOperationResultAndProcessInfo(HCS_OPERATION operation,
    HCS_PROCESS_INFORMATION *processInformation, PWSTR *resultDocument);
HRESULT WINAPI HcsWaitForOperationResult(HCS_OPERATION operation, DWORD timeoutMs,
    PWSTR *resultDocument);
HRESULT WINAPI HcsWaitForOperationResultAndProcessInfo(HCS_OPERATION operation, DWORD timeoutMs,
    HCS_PROCESS_INFORMATION *processInformation, PWSTR *resultDocument);
HRESULT WINAPI HcsSetOperationCallback(HCS_OPERATION operation, const void *context,
    HCS_OPERATION_COMPLETION callback);
HRESULT WINAPI HcsCancelOperation(HCS_OPERATION operation);
HRESULT WINAPI HcsAddResourceToOperation(HCS_OPERATION operation, HCS_RESOURCE_TYPE type,
    PCWSTR uri, HANDLE handle);
HRESULT WINAPI HcsGetOperationProperties(HCS_OPERATION operation, PCWSTR options,
    PWSTR *resultDocument);

/* compute systems */
HRESULT WINAPI HcsEnumerateComputeSystems(PCWSTR query, HCS_OPERATION operation);
HRESULT WINAPI HcsEnumerateComputeSystemsInNamespace(PCWSTR idNamespace, PCWSTR query,
    HCS_OPERATION operation);
HRESULT WINAPI HcsCreateComputeSystem(PCWSTR id, PCWSTR configuration, HCS_OPERATION operation,
    const SECURITY_DESCRIPTOR *securityDescriptor, HCS_SYSTEM *computeSystem);
HRESULT WINAPI HcsCreateComputeSystemInNamespace(PCWSTR idNamespace, PCWSTR id,
    PCWSTR configuration, HCS_OPERATION operation, const HCS_CREATE_OPTIONS *options,
    HCS_SYSTEM *computeSystem);
HRESULT WINAPI HcsOpenComputeSystem(PCWSTR id, DWORD requestedAccess, HCS_SYSTEM *computeSystem);
HRESULT WINAPI HcsOpenComputeSystemInNamespace(PCWSTR idNamespace, PCWSTR id,
    DWORD requestedAccess, HCS_SYSTEM *computeSystem);
void WINAPI HcsCloseComputeSystem(HCS_SYSTEM computeSystem);
HRESULT WINAPI HcsStartComputeSystem(HCS_SYSTEM computeSystem, HCS_OPERATION operation,
    PCWSTR options);
HRESULT WINAPI HcsShutDownComputeSystem(HCS_SYSTEM computeSystem, HCS_OPERATION operation,
    PCWSTR options);
HRESULT WINAPI HcsTerminateComputeSystem(HCS_SYSTEM computeSystem, HCS_OPERATION operation,
    PCWSTR options);
HRESULT WINAPI HcsCrashComputeSystem(HCS_SYSTEM computeSystem, HCS_OPERATION operation,
    PCWSTR options);
HRESULT WINAPI HcsPauseComputeSystem(HCS_SYSTEM computeSystem, HCS_OPERATION operation,
    PCWSTR options);
HRESULT WINAPI HcsResumeComputeSystem(HCS_SYSTEM computeSystem, HCS_OPERATION operation,
    PCWSTR options);
HRESULT WINAPI HcsSaveComputeSystem(HCS_SYSTEM computeSystem, HCS_OPERATION operation,
    PCWSTR options);
HRESULT WINAPI HcsGetComputeSystemProperties(HCS_SYSTEM computeSystem, HCS_OPERATION operation,
    PCWSTR propertyQuery);
HRESULT WINAPI HcsModifyComputeSystem(HCS_SYSTEM computeSystem, HCS_OPERATION operation,
    PCWSTR configuration, HANDLE identity);
HRESULT WINAPI HcsWaitForComputeSystemExit(HCS_SYSTEM computeSystem, DWORD timeoutMs,
    PWSTR *result);
HRESULT WINAPI HcsSetComputeSystemCallback(HCS_SYSTEM computeSystem,
    HCS_EVENT_OPTIONS callbackOptions, const void *context, HCS_EVENT_CALLBACK callback);

/* live migration (hcsshim extras) */
HRESULT WINAPI HcsInitializeLiveMigrationOnSource(HCS_SYSTEM computeSystem,
    HCS_OPERATION operation, PCWSTR options);
HRESULT WINAPI HcsStartLiveMigrationOnSource(HCS_SYSTEM computeSystem, HCS_OPERATION operation,
    PCWSTR options);
HRESULT WINAPI HcsStartLiveMigrationTransfer(HCS_SYSTEM computeSystem, HCS_OPERATION operation,
    PCWSTR options);
HRESULT WINAPI HcsFinalizeLiveMigration(HCS_SYSTEM computeSystem, HCS_OPERATION operation,
    PCWSTR options);
HRESULT WINAPI HcsCancelLiveMigration(HCS_SYSTEM computeSystem, HCS_OPERATION operation,
    PCWSTR options);

/* processes */
HRESULT WINAPI HcsCreateProcess(HCS_SYSTEM computeSystem, PCWSTR processParameters,
    HCS_OPERATION operation, const SECURITY_DESCRIPTOR *securityDescriptor,
    HCS_PROCESS *process);
HRESULT WINAPI HcsOpenProcess(HCS_SYSTEM computeSystem, DWORD processId, DWORD requestedAccess,
    HCS_PROCESS *process);
void WINAPI HcsCloseProcess(HCS_PROCESS process);
HRESULT WINAPI HcsTerminateProcess(HCS_PROCESS process, HCS_OPERATION operation, PCWSTR options);
HRESULT WINAPI HcsSignalProcess(HCS_PROCESS process, HCS_OPERATION operation, PCWSTR options);
HRESULT WINAPI HcsGetProcessInfo(HCS_PROCESS process, HCS_OPERATION operation);
HRESULT WINAPI HcsGetProcessProperties(HCS_PROCESS process, HCS_OPERATION operation,
    PCWSTR propertyQuery);
HRESULT WINAPI HcsModifyProcess(HCS_PROCESS process, HCS_OPERATION operation, PCWSTR settings);
HRESULT WINAPI HcsSetProcessCallback(HCS_PROCESS process, HCS_EVENT_OPTIONS callbackOptions,
    void *context, HCS_EVENT_CALLBACK callback);
HRESULT WINAPI HcsWaitForProcessExit(HCS_PROCESS computeSystem, DWORD timeoutMs, PWSTR *result);

/* host service */
HRESULT WINAPI HcsGetServiceProperties(PCWSTR propertyQuery, PWSTR *result);
HRESULT WINAPI HcsModifyServiceSettings(PCWSTR settings, PWSTR *result);
HRESULT WINAPI HcsSubmitWerReport(PCWSTR settings);

/* VM utilities */
HRESULT WINAPI HcsCreateEmptyGuestStateFile(PCWSTR guestStateFilePath);
HRESULT WINAPI HcsCreateEmptyRuntimeStateFile(PCWSTR runtimeStateFilePath);
HRESULT WINAPI HcsGrantVmAccess(PCWSTR vmId, PCWSTR filePath);
HRESULT WINAPI HcsRevokeVmAccess(PCWSTR vmId, PCWSTR filePath);
HRESULT WINAPI HcsGrantVmGroupAccess(PCWSTR filePath);
HRESULT WINAPI HcsRevokeVmGroupAccess(PCWSTR filePath);
HRESULT WINAPI HcsGetProcessorCompatibilityFromSavedState(PCWSTR runtimeFileName,
    PCWSTR *processorFeaturesString);
"""

# The 14 entry points exported by computestorage.dll on Windows (API.md §3.7).
CDEF_STORAGE_FUNCTIONS = r"""
HRESULT WINAPI HcsImportLayer(PCWSTR layerPath, PCWSTR sourceFolderPath, PCWSTR layerData);
HRESULT WINAPI HcsExportLayer(PCWSTR layerPath, PCWSTR exportFolderPath, PCWSTR layerData,
    PCWSTR options);
HRESULT WINAPI HcsExportLegacyWritableLayer(PCWSTR writableLayerMountPath,
    PCWSTR writableLayerFolderPath, PCWSTR exportFolderPath, PCWSTR layerData);
HRESULT WINAPI HcsDestroyLayer(PCWSTR layerPath);
HRESULT WINAPI HcsSetupBaseOSLayer(PCWSTR layerPath, HANDLE vhdHandle, PCWSTR options);
HRESULT WINAPI HcsSetupBaseOSVolume(PCWSTR layerPath, PCWSTR volumePath, PCWSTR options);
HRESULT WINAPI HcsInitializeWritableLayer(PCWSTR writableLayerPath, PCWSTR layerData,
    PCWSTR options);
HRESULT WINAPI HcsInitializeLegacyWritableLayer(PCWSTR writableLayerMountPath,
    PCWSTR writableLayerFolderPath, PCWSTR layerData, PCWSTR options);
HRESULT WINAPI HcsAttachLayerStorageFilter(PCWSTR layerPath, PCWSTR layerData);
HRESULT WINAPI HcsDetachLayerStorageFilter(PCWSTR layerPath);
HRESULT WINAPI HcsFormatWritableLayerVhd(HANDLE vhdHandle);
HRESULT WINAPI HcsGetLayerVhdMountPath(HANDLE vhdHandle, PWSTR *mountPath);
HRESULT WINAPI HcsAttachOverlayFilter(PCWSTR volumePath, PCWSTR layerData);
HRESULT WINAPI HcsDetachOverlayFilter(PCWSTR volumePath, PCWSTR layerData);
"""

# The deallocator for result strings (API.md §1.3, errata 1).  Not an HCS export:
# kernel32 on Windows, exported by libcomputecore on Linux.
CDEF_ALLOCATOR = r"""
HANDLE LocalFree(HANDLE hMem);
"""

CDEF = CDEF_TYPES + CDEF_CORE_FUNCTIONS + CDEF_STORAGE_FUNCTIONS + CDEF_ALLOCATOR

# Event-callback options and other constants the Python side passes by value.
GENERIC_ALL = 0x10000000
INFINITE = 0xFFFFFFFF
HCS_CREATE_OPTIONS_1_VERSION = 0x00010000
