/*
 * computecore.h — the Host Compute System (HCS) C API as implemented by
 * aiohcs' Linux library libcomputecore.so.
 *
 * Written for aiohcs from the facts in /work/shared/hcs/API.md; it is not
 * Microsoft's header.  Types keep the Windows names so that code written
 * against computecore.dll compiles unchanged, but they are spelled with
 * fixed-width C types because Linux has no <windows.h>:
 *   - strings are UTF-16 (WCHAR = char16_t), never wchar_t (32-bit on Linux);
 *   - WINAPI / CALLBACK are empty (x86-64 has one calling convention);
 *   - HANDLE values inside HCS_PROCESS_INFORMATION carry file descriptors,
 *     see docs/native.md.
 * Result strings are released with LocalFree(), which this library exports.
 */
#ifndef AIOHCS_COMPUTECORE_H
#define AIOHCS_COMPUTECORE_H

#include <stdint.h>
#include <uchar.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef WINAPI
#define WINAPI
#endif
#ifndef CALLBACK
#define CALLBACK
#endif

/* Only the API is exported from the shared object (built with
 * -fvisibility=hidden); HCSAPI marks the public entry points. */
#if defined(AIOHCS_BUILDING_LIBRARY) && defined(__GNUC__)
#define HCSAPI __attribute__((visibility("default")))
#else
#define HCSAPI
#endif

/* ---- primitive types ------------------------------------------------- */
typedef int32_t  HRESULT;
typedef uint32_t DWORD;
typedef uint64_t UINT64;
typedef char16_t WCHAR;
typedef const WCHAR *PCWSTR;
typedef WCHAR *PWSTR;
typedef void *HANDLE;
typedef struct _SECURITY_DESCRIPTOR SECURITY_DESCRIPTOR; /* opaque; ignored on Linux */

#define INVALID_HANDLE_VALUE ((HANDLE)(intptr_t)-1)
#ifndef INFINITE
#define INFINITE 0xFFFFFFFFu
#endif
#define GENERIC_ALL 0x10000000u

/* ---- handles (opaque ids, never pointers to memory) ------------------- */
typedef void *HCS_SYSTEM;
typedef void *HCS_PROCESS;
typedef void *HCS_OPERATION;
typedef void *HCS_CALLBACK;

/* ---- HCS_OPERATION_TYPE ---------------------------------------------- */
typedef int32_t HCS_OPERATION_TYPE;
#define HcsOperationTypeNone                 (-1)
#define HcsOperationTypeEnumerate            0
#define HcsOperationTypeCreate               1
#define HcsOperationTypeStart                2
#define HcsOperationTypeShutdown             3
#define HcsOperationTypePause                4
#define HcsOperationTypeResume               5
#define HcsOperationTypeSave                 6
#define HcsOperationTypeTerminate            7
#define HcsOperationTypeModify               8
#define HcsOperationTypeGetProperties        9
#define HcsOperationTypeCreateProcess        10
#define HcsOperationTypeSignalProcess        11
#define HcsOperationTypeGetProcessInfo       12
#define HcsOperationTypeGetProcessProperties 13
#define HcsOperationTypeModifyProcess        14
#define HcsOperationTypeCrash                15
#define HcsOperationTypeReserved1            16
#define HcsOperationTypeReserved2            17
#define HcsOperationTypeReserved3            18
#define HcsOperationTypeLiveMigration        19

#define HCS_INVALID_OPERATION_ID ((UINT64)-1)

/* ---- HCS_EVENT_TYPE (unsigned: some values exceed INT32_MAX) ---------- */
typedef uint32_t HCS_EVENT_TYPE;
#define HcsEventInvalid                           0x00000000u
#define HcsEventSystemExited                      0x00000001u
#define HcsEventSystemCrashInitiated              0x00000002u
#define HcsEventSystemCrashReport                 0x00000003u
#define HcsEventSystemRdpEnhancedModeStateChanged 0x00000004u
#define HcsEventSystemSiloJobCreated              0x00000005u
#define HcsEventSystemGuestConnectionClosed       0x00000006u
#define HcsEventProcessExited                     0x00010000u
#define HcsEventOperationCallback                 0x01000000u
#define HcsEventServiceDisconnect                 0x02000000u
#define HcsEventGroupVmLifecycle                  0x80000002u
#define HcsEventGroupLiveMigration                0x80000003u
#define HcsEventGroupOperationInfo                0xC0000001u

/* ---- option flags ------------------------------------------------------ */
typedef uint32_t HCS_EVENT_OPTIONS;
#define HcsEventOptionNone                     0x0u
#define HcsEventOptionEnableOperationCallbacks 0x1u
#define HcsEventOptionEnableVmLifecycle        0x2u
#define HcsEventOptionEnableLiveMigrationEvents 0x4u

typedef uint32_t HCS_OPERATION_OPTIONS;
#define HcsOperationOptionNone           0x0u
#define HcsOperationOptionProgressUpdate 0x1u
#define HcsOperationOptionReserved1      0x2u

typedef uint32_t HCS_RESOURCE_TYPE;
#define HcsResourceTypeNone      0u
#define HcsResourceTypeFile      1u
#define HcsResourceTypeJob       2u
#define HcsResourceTypeComObject 3u
#define HcsResourceTypeSocket    4u

typedef uint32_t HCS_CREATE_OPTIONS;
#define HcsCreateOptions_1 0x00010000u

/* ---- structs (layouts checked by tests/test_abi.c) -------------------- */
typedef struct HCS_EVENT {
    HCS_EVENT_TYPE Type;
    PCWSTR         EventData;   /* valid only during the callback */
    HCS_OPERATION  Operation;   /* only for HcsEventOperationCallback */
} HCS_EVENT;

typedef struct HCS_PROCESS_INFORMATION {
    DWORD  ProcessId;
    DWORD  Reserved;
    HANDLE StdInput;            /* (HANDLE)(intptr_t)fd, caller-owned, or INVALID_HANDLE_VALUE */
    HANDLE StdOutput;
    HANDLE StdError;
} HCS_PROCESS_INFORMATION;

typedef void (CALLBACK *HCS_OPERATION_COMPLETION)(HCS_OPERATION operation, void *context);
typedef void (CALLBACK *HCS_EVENT_CALLBACK)(HCS_EVENT *event, void *context);

typedef struct HCS_CREATE_OPTIONS_1 {
    HCS_CREATE_OPTIONS   Version;
    HANDLE               UserToken;
    SECURITY_DESCRIPTOR *SecurityDescriptor;
    HCS_EVENT_OPTIONS    CallbackOptions;
    void                *CallbackContext;
    HCS_EVENT_CALLBACK   Callback;
} HCS_CREATE_OPTIONS_1;

/* ---- HRESULTs this library returns ------------------------------------ */
#define S_OK                                        ((HRESULT)0x00000000)
#define E_NOTIMPL                                   ((HRESULT)0x80004001u)
#define E_POINTER                                   ((HRESULT)0x80004003u)
#define E_ABORT                                     ((HRESULT)0x80004004u)
#define E_FAIL                                      ((HRESULT)0x80004005u)
#define E_UNEXPECTED                                ((HRESULT)0x8000FFFFu)
#define E_HANDLE                                    ((HRESULT)0x80070006u)
#define E_OUTOFMEMORY                               ((HRESULT)0x8007000Eu)
#define E_INVALIDARG                                ((HRESULT)0x80070057u)
#define HRESULT_ERROR_NOT_FOUND                     ((HRESULT)0x80070490u)
#define HCS_E_TERMINATED_DURING_START               ((HRESULT)0x80370100u)
#define HCS_E_INVALID_STATE                         ((HRESULT)0x80370105u)
#define HCS_E_UNEXPECTED_EXIT                       ((HRESULT)0x80370106u)
#define HCS_E_TERMINATED                            ((HRESULT)0x80370107u)
#define HCS_E_CONNECT_FAILED                        ((HRESULT)0x80370108u)
#define HCS_E_CONNECTION_TIMEOUT                    ((HRESULT)0x80370109u)
#define HCS_E_CONNECTION_CLOSED                     ((HRESULT)0x8037010Au)
#define HCS_E_UNKNOWN_MESSAGE                       ((HRESULT)0x8037010Bu)
#define HCS_E_UNSUPPORTED_PROTOCOL_VERSION          ((HRESULT)0x8037010Cu)
#define HCS_E_INVALID_JSON                          ((HRESULT)0x8037010Du)
#define HCS_E_SYSTEM_NOT_FOUND                      ((HRESULT)0x8037010Eu)
#define HCS_E_SYSTEM_ALREADY_EXISTS                 ((HRESULT)0x8037010Fu)
#define HCS_E_SYSTEM_ALREADY_STOPPED                ((HRESULT)0x80370110u)
#define HCS_E_PROTOCOL_ERROR                        ((HRESULT)0x80370111u)
#define HCS_E_SERVICE_NOT_AVAILABLE                 ((HRESULT)0x80370114u)
#define HCS_E_OPERATION_NOT_STARTED                 ((HRESULT)0x80370115u)
#define HCS_E_OPERATION_ALREADY_STARTED             ((HRESULT)0x80370116u)
#define HCS_E_OPERATION_PENDING                     ((HRESULT)0x80370117u)
#define HCS_E_OPERATION_TIMEOUT                     ((HRESULT)0x80370118u)
#define HCS_E_OPERATION_SYSTEM_CALLBACK_ALREADY_SET ((HRESULT)0x80370119u)
#define HCS_E_OPERATION_RESULT_ALLOCATION_FAILED    ((HRESULT)0x8037011Au)
#define HCS_E_ACCESS_DENIED                         ((HRESULT)0x8037011Bu)
#define HCS_E_PROCESS_INFO_NOT_AVAILABLE            ((HRESULT)0x8037011Du)
#define HCS_E_SERVICE_DISCONNECT                    ((HRESULT)0x8037011Eu)
#define HCS_E_PROCESS_ALREADY_STOPPED               ((HRESULT)0x8037011Fu)
#define HCS_E_OPERATION_ALREADY_CANCELLED           ((HRESULT)0x80370121u)

#ifndef SUCCEEDED
#define SUCCEEDED(hr) (((HRESULT)(hr)) >= 0)
#define FAILED(hr)    (((HRESULT)(hr)) < 0)
#endif

/* ---- memory ------------------------------------------------------------ */
/* Frees a result string (PWSTR) returned by this library.  Like Windows'
 * LocalFree it returns NULL on success; LocalFree(NULL) is a no-op. */
HCSAPI void *LocalFree(void *mem);

/* ---- 3.1 operations ---------------------------------------------------- */
HCSAPI HCS_OPERATION WINAPI HcsCreateOperation(const void *context, HCS_OPERATION_COMPLETION callback);
HCSAPI HCS_OPERATION WINAPI HcsCreateOperationWithNotifications(HCS_OPERATION_OPTIONS eventTypes,
                                                                const void *context,
                                                                HCS_EVENT_CALLBACK callback);
HCSAPI void WINAPI HcsCloseOperation(HCS_OPERATION operation);
HCSAPI void *WINAPI HcsGetOperationContext(HCS_OPERATION operation);
HCSAPI HRESULT WINAPI HcsSetOperationContext(HCS_OPERATION operation, const void *context);
HCSAPI HCS_SYSTEM WINAPI HcsGetComputeSystemFromOperation(HCS_OPERATION operation);
HCSAPI HCS_PROCESS WINAPI HcsGetProcessFromOperation(HCS_OPERATION operation);
HCSAPI HCS_OPERATION_TYPE WINAPI HcsGetOperationType(HCS_OPERATION operation);
HCSAPI UINT64 WINAPI HcsGetOperationId(HCS_OPERATION operation);
HCSAPI HRESULT WINAPI HcsGetOperationResult(HCS_OPERATION operation, PWSTR *resultDocument);
HCSAPI HRESULT WINAPI HcsGetOperationResultAndProcessInfo(HCS_OPERATION operation,
                                                          HCS_PROCESS_INFORMATION *processInformation,
                                                          PWSTR *resultDocument);
HCSAPI HRESULT WINAPI HcsWaitForOperationResult(HCS_OPERATION operation, DWORD timeoutMs,
                                                PWSTR *resultDocument);
HCSAPI HRESULT WINAPI HcsWaitForOperationResultAndProcessInfo(HCS_OPERATION operation, DWORD timeoutMs,
                                                              HCS_PROCESS_INFORMATION *processInformation,
                                                              PWSTR *resultDocument);
HCSAPI HRESULT WINAPI HcsSetOperationCallback(HCS_OPERATION operation, const void *context,
                                              HCS_OPERATION_COMPLETION callback);
HCSAPI HRESULT WINAPI HcsCancelOperation(HCS_OPERATION operation);
HCSAPI HRESULT WINAPI HcsAddResourceToOperation(HCS_OPERATION operation, HCS_RESOURCE_TYPE type,
                                                PCWSTR uri, HANDLE handle);
HCSAPI HRESULT WINAPI HcsGetOperationProperties(HCS_OPERATION operation, PCWSTR options,
                                                PWSTR *resultDocument);

/* ---- 3.2 compute systems ------------------------------------------------ */
HCSAPI HRESULT WINAPI HcsEnumerateComputeSystems(PCWSTR query, HCS_OPERATION operation);
HCSAPI HRESULT WINAPI HcsEnumerateComputeSystemsInNamespace(PCWSTR idNamespace, PCWSTR query,
                                                            HCS_OPERATION operation);
HCSAPI HRESULT WINAPI HcsCreateComputeSystem(PCWSTR id, PCWSTR configuration, HCS_OPERATION operation,
                                             const SECURITY_DESCRIPTOR *securityDescriptor,
                                             HCS_SYSTEM *computeSystem);
HCSAPI HRESULT WINAPI HcsCreateComputeSystemInNamespace(PCWSTR idNamespace, PCWSTR id,
                                                        PCWSTR configuration, HCS_OPERATION operation,
                                                        const HCS_CREATE_OPTIONS *options,
                                                        HCS_SYSTEM *computeSystem);
HCSAPI HRESULT WINAPI HcsOpenComputeSystem(PCWSTR id, DWORD requestedAccess, HCS_SYSTEM *computeSystem);
HCSAPI HRESULT WINAPI HcsOpenComputeSystemInNamespace(PCWSTR idNamespace, PCWSTR id,
                                                      DWORD requestedAccess, HCS_SYSTEM *computeSystem);
HCSAPI void WINAPI HcsCloseComputeSystem(HCS_SYSTEM computeSystem);
HCSAPI HRESULT WINAPI HcsStartComputeSystem(HCS_SYSTEM computeSystem, HCS_OPERATION operation, PCWSTR options);
HCSAPI HRESULT WINAPI HcsShutDownComputeSystem(HCS_SYSTEM computeSystem, HCS_OPERATION operation, PCWSTR options);
HCSAPI HRESULT WINAPI HcsTerminateComputeSystem(HCS_SYSTEM computeSystem, HCS_OPERATION operation, PCWSTR options);
HCSAPI HRESULT WINAPI HcsCrashComputeSystem(HCS_SYSTEM computeSystem, HCS_OPERATION operation, PCWSTR options);
HCSAPI HRESULT WINAPI HcsPauseComputeSystem(HCS_SYSTEM computeSystem, HCS_OPERATION operation, PCWSTR options);
HCSAPI HRESULT WINAPI HcsResumeComputeSystem(HCS_SYSTEM computeSystem, HCS_OPERATION operation, PCWSTR options);
HCSAPI HRESULT WINAPI HcsSaveComputeSystem(HCS_SYSTEM computeSystem, HCS_OPERATION operation, PCWSTR options);
HCSAPI HRESULT WINAPI HcsGetComputeSystemProperties(HCS_SYSTEM computeSystem, HCS_OPERATION operation,
                                                    PCWSTR propertyQuery);
HCSAPI HRESULT WINAPI HcsModifyComputeSystem(HCS_SYSTEM computeSystem, HCS_OPERATION operation,
                                             PCWSTR configuration, HANDLE identity);
HCSAPI HRESULT WINAPI HcsWaitForComputeSystemExit(HCS_SYSTEM computeSystem, DWORD timeoutMs, PWSTR *result);
HCSAPI HRESULT WINAPI HcsSetComputeSystemCallback(HCS_SYSTEM computeSystem, HCS_EVENT_OPTIONS callbackOptions,
                                                  const void *context, HCS_EVENT_CALLBACK callback);

/* ---- 3.3 live migration (E_NOTIMPL on Linux) ---------------------------- */
HCSAPI HRESULT WINAPI HcsInitializeLiveMigrationOnSource(HCS_SYSTEM computeSystem, HCS_OPERATION operation, PCWSTR options);
HCSAPI HRESULT WINAPI HcsStartLiveMigrationOnSource(HCS_SYSTEM computeSystem, HCS_OPERATION operation, PCWSTR options);
HCSAPI HRESULT WINAPI HcsStartLiveMigrationTransfer(HCS_SYSTEM computeSystem, HCS_OPERATION operation, PCWSTR options);
HCSAPI HRESULT WINAPI HcsFinalizeLiveMigration(HCS_SYSTEM computeSystem, HCS_OPERATION operation, PCWSTR options);
HCSAPI HRESULT WINAPI HcsCancelLiveMigration(HCS_SYSTEM computeSystem, HCS_OPERATION operation, PCWSTR options);

/* ---- 3.4 processes ------------------------------------------------------ */
HCSAPI HRESULT WINAPI HcsCreateProcess(HCS_SYSTEM computeSystem, PCWSTR processParameters,
                                       HCS_OPERATION operation,
                                       const SECURITY_DESCRIPTOR *securityDescriptor,
                                       HCS_PROCESS *process);
HCSAPI HRESULT WINAPI HcsOpenProcess(HCS_SYSTEM computeSystem, DWORD processId, DWORD requestedAccess,
                                     HCS_PROCESS *process);
HCSAPI void WINAPI HcsCloseProcess(HCS_PROCESS process);
HCSAPI HRESULT WINAPI HcsTerminateProcess(HCS_PROCESS process, HCS_OPERATION operation, PCWSTR options);
HCSAPI HRESULT WINAPI HcsSignalProcess(HCS_PROCESS process, HCS_OPERATION operation, PCWSTR options);
HCSAPI HRESULT WINAPI HcsGetProcessInfo(HCS_PROCESS process, HCS_OPERATION operation);
HCSAPI HRESULT WINAPI HcsGetProcessProperties(HCS_PROCESS process, HCS_OPERATION operation,
                                              PCWSTR propertyQuery);
HCSAPI HRESULT WINAPI HcsModifyProcess(HCS_PROCESS process, HCS_OPERATION operation, PCWSTR settings);
HCSAPI HRESULT WINAPI HcsSetProcessCallback(HCS_PROCESS process, HCS_EVENT_OPTIONS callbackOptions,
                                            void *context, HCS_EVENT_CALLBACK callback);
HCSAPI HRESULT WINAPI HcsWaitForProcessExit(HCS_PROCESS process, DWORD timeoutMs, PWSTR *result);

/* ---- 3.5 host service --------------------------------------------------- */
HCSAPI HRESULT WINAPI HcsGetServiceProperties(PCWSTR propertyQuery, PWSTR *result);
HCSAPI HRESULT WINAPI HcsModifyServiceSettings(PCWSTR settings, PWSTR *result);
HCSAPI HRESULT WINAPI HcsSubmitWerReport(PCWSTR settings);

/* ---- 3.6 VM utility functions (E_NOTIMPL on Linux) --------------------- */
HCSAPI HRESULT WINAPI HcsCreateEmptyGuestStateFile(PCWSTR guestStateFilePath);
HCSAPI HRESULT WINAPI HcsCreateEmptyRuntimeStateFile(PCWSTR runtimeStateFilePath);
HCSAPI HRESULT WINAPI HcsGrantVmAccess(PCWSTR vmId, PCWSTR filePath);
HCSAPI HRESULT WINAPI HcsRevokeVmAccess(PCWSTR vmId, PCWSTR filePath);
HCSAPI HRESULT WINAPI HcsGrantVmGroupAccess(PCWSTR filePath);
HCSAPI HRESULT WINAPI HcsRevokeVmGroupAccess(PCWSTR filePath);
HCSAPI HRESULT WINAPI HcsGetProcessorCompatibilityFromSavedState(PCWSTR runtimeFileName,
                                                                 PCWSTR *processorFeaturesString);

/* ---- 3.7 container storage (E_NOTIMPL on Linux) ------------------------ */
HCSAPI HRESULT WINAPI HcsImportLayer(PCWSTR layerPath, PCWSTR sourceFolderPath, PCWSTR layerData);
HCSAPI HRESULT WINAPI HcsExportLayer(PCWSTR layerPath, PCWSTR exportFolderPath, PCWSTR layerData, PCWSTR options);
HCSAPI HRESULT WINAPI HcsExportLegacyWritableLayer(PCWSTR writableLayerMountPath, PCWSTR writableLayerFolderPath,
                                                   PCWSTR exportFolderPath, PCWSTR layerData);
HCSAPI HRESULT WINAPI HcsDestroyLayer(PCWSTR layerPath);
HCSAPI HRESULT WINAPI HcsSetupBaseOSLayer(PCWSTR layerPath, HANDLE vhdHandle, PCWSTR options);
HCSAPI HRESULT WINAPI HcsSetupBaseOSVolume(PCWSTR layerPath, PCWSTR volumePath, PCWSTR options);
HCSAPI HRESULT WINAPI HcsInitializeWritableLayer(PCWSTR writableLayerPath, PCWSTR layerData, PCWSTR options);
HCSAPI HRESULT WINAPI HcsInitializeLegacyWritableLayer(PCWSTR writableLayerMountPath,
                                                       PCWSTR writableLayerFolderPath,
                                                       PCWSTR layerData, PCWSTR options);
HCSAPI HRESULT WINAPI HcsAttachLayerStorageFilter(PCWSTR layerPath, PCWSTR layerData);
HCSAPI HRESULT WINAPI HcsDetachLayerStorageFilter(PCWSTR layerPath);
HCSAPI HRESULT WINAPI HcsFormatWritableLayerVhd(HANDLE vhdHandle);
HCSAPI HRESULT WINAPI HcsGetLayerVhdMountPath(HANDLE vhdHandle, PWSTR *mountPath);
HCSAPI HRESULT WINAPI HcsAttachOverlayFilter(PCWSTR volumePath, PCWSTR layerData);
HCSAPI HRESULT WINAPI HcsDetachOverlayFilter(PCWSTR volumePath, PCWSTR layerData);

#ifdef __cplusplus
}
#endif
#endif /* AIOHCS_COMPUTECORE_H */
