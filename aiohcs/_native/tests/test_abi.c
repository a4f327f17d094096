/*
 * test_abi.c — the binary surface: struct layouts from API.md §2, every one
 * of the 74 entry points (plus LocalFree) exported, and the Windows-only
 * ones answering E_NOTIMPL without touching their arguments.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>

#include "testlib.h"

static const char *const k_exports[] = {
    "HcsCreateOperation", "HcsCreateOperationWithNotifications", "HcsCloseOperation",
    "HcsGetOperationContext", "HcsSetOperationContext", "HcsGetComputeSystemFromOperation",
    "HcsGetProcessFromOperation", "HcsGetOperationType", "HcsGetOperationId",
    "HcsGetOperationResult", "HcsGetOperationResultAndProcessInfo", "HcsWaitForOperationResult",
    "HcsWaitForOperationResultAndProcessInfo", "HcsSetOperationCallback", "HcsCancelOperation",
    "HcsAddResourceToOperation", "HcsGetOperationProperties", "HcsEnumerateComputeSystems",
    "HcsEnumerateComputeSystemsInNamespace", "HcsCreateComputeSystem",
    "HcsCreateComputeSystemInNamespace", "HcsOpenComputeSystem", "HcsOpenComputeSystemInNamespace",
    "HcsCloseComputeSystem", "HcsStartComputeSystem", "HcsShutDownComputeSystem",
    "HcsTerminateComputeSystem", "HcsCrashComputeSystem", "HcsPauseComputeSystem",
    "HcsResumeComputeSystem", "HcsSaveComputeSystem", "HcsGetComputeSystemProperties",
    "HcsModifyComputeSystem", "HcsWaitForComputeSystemExit", "HcsSetComputeSystemCallback",
    "HcsInitializeLiveMigrationOnSource", "HcsStartLiveMigrationOnSource",
    "HcsStartLiveMigrationTransfer", "HcsFinalizeLiveMigration", "HcsCancelLiveMigration",
    "HcsCreateProcess", "HcsOpenProcess", "HcsCloseProcess", "HcsTerminateProcess",
    "HcsSignalProcess", "HcsGetProcessInfo", "HcsGetProcessProperties", "HcsModifyProcess",
    "HcsSetProcessCallback", "HcsWaitForProcessExit", "HcsGetServiceProperties",
    "HcsModifyServiceSettings", "HcsSubmitWerReport", "HcsCreateEmptyGuestStateFile",
    "HcsCreateEmptyRuntimeStateFile", "HcsGrantVmAccess", "HcsRevokeVmAccess",
    "HcsGrantVmGroupAccess", "HcsRevokeVmGroupAccess", "HcsGetProcessorCompatibilityFromSavedState",
    "HcsImportLayer", "HcsExportLayer", "HcsExportLegacyWritableLayer", "HcsDestroyLayer",
    "HcsSetupBaseOSLayer", "HcsSetupBaseOSVolume", "HcsInitializeWritableLayer",
    "HcsInitializeLegacyWritableLayer", "HcsAttachLayerStorageFilter", "HcsDetachLayerStorageFilter",
    "HcsFormatWritableLayerVhd", "HcsGetLayerVhdMountPath", "HcsAttachOverlayFilter",
    "HcsDetachOverlayFilter",
};

int main(void)
{
    CHECK(sizeof(HCS_EVENT) == 24);
    CHECK(offsetof(HCS_EVENT, EventData) == 8);
    CHECK(offsetof(HCS_EVENT, Operation) == 16);
    CHECK(sizeof(HCS_PROCESS_INFORMATION) == 32);
    CHECK(offsetof(HCS_PROCESS_INFORMATION, StdInput) == 8);
    CHECK(offsetof(HCS_PROCESS_INFORMATION, StdOutput) == 16);
    CHECK(offsetof(HCS_PROCESS_INFORMATION, StdError) == 24);
    CHECK(sizeof(HCS_CREATE_OPTIONS_1) == 48);
    CHECK(offsetof(HCS_CREATE_OPTIONS_1, CallbackOptions) == 24);
    CHECK(offsetof(HCS_CREATE_OPTIONS_1, Callback) == 40);
    CHECK(sizeof(WCHAR) == 2);
    CHECK(sizeof(HRESULT) == 4);

    size_t n = sizeof k_exports / sizeof k_exports[0];
    CHECK(n == 74);
    for (size_t i = 0; i < n; i++) {
        if (!dlsym(RTLD_DEFAULT, k_exports[i])) {
            fprintf(stderr, "missing export %s\n", k_exports[i]);
            CHECK(!"export missing");
        }
    }
    CHECK(dlsym(RTLD_DEFAULT, "LocalFree") != NULL);
    /* internals must stay hidden */
    CHECK(dlsym(RTLD_DEFAULT, "hcs_conn_ensure") == NULL);
    CHECK(dlsym(RTLD_DEFAULT, "hcs_utf16_to_utf8") == NULL);

    WCHAR *p = t_w("/tmp/x");
    CHECK_HR(HcsSubmitWerReport(p), E_NOTIMPL);
    CHECK_HR(HcsCreateEmptyGuestStateFile(p), E_NOTIMPL);
    CHECK_HR(HcsCreateEmptyRuntimeStateFile(p), E_NOTIMPL);
    CHECK_HR(HcsGrantVmAccess(p, p), E_NOTIMPL);
    CHECK_HR(HcsRevokeVmAccess(p, p), E_NOTIMPL);
    CHECK_HR(HcsGrantVmGroupAccess(p), E_NOTIMPL);
    CHECK_HR(HcsRevokeVmGroupAccess(p), E_NOTIMPL);
    PCWSTR feat = (PCWSTR)(uintptr_t)1;
    CHECK_HR(HcsGetProcessorCompatibilityFromSavedState(p, &feat), E_NOTIMPL);
    CHECK(feat == NULL);
    CHECK_HR(HcsImportLayer(p, p, p), E_NOTIMPL);
    CHECK_HR(HcsExportLayer(p, p, p, NULL), E_NOTIMPL);
    CHECK_HR(HcsExportLegacyWritableLayer(p, p, p, p), E_NOTIMPL);
    CHECK_HR(HcsDestroyLayer(p), E_NOTIMPL);
    CHECK_HR(HcsSetupBaseOSLayer(p, NULL, NULL), E_NOTIMPL);
    CHECK_HR(HcsSetupBaseOSVolume(p, p, NULL), E_NOTIMPL);
    CHECK_HR(HcsInitializeWritableLayer(p, p, NULL), E_NOTIMPL);
    CHECK_HR(HcsInitializeLegacyWritableLayer(p, p, p, NULL), E_NOTIMPL);
    CHECK_HR(HcsAttachLayerStorageFilter(p, p), E_NOTIMPL);
    CHECK_HR(HcsDetachLayerStorageFilter(p), E_NOTIMPL);
    CHECK_HR(HcsFormatWritableLayerVhd(NULL), E_NOTIMPL);
    PWSTR mp = (PWSTR)(uintptr_t)1;
    CHECK_HR(HcsGetLayerVhdMountPath(NULL, &mp), E_NOTIMPL);
    CHECK(mp == NULL);
    CHECK_HR(HcsAttachOverlayFilter(p, p), E_NOTIMPL);
    CHECK_HR(HcsDetachOverlayFilter(p, p), E_NOTIMPL);
    CHECK_HR(HcsInitializeLiveMigrationOnSource(NULL, NULL, NULL), E_NOTIMPL);
    CHECK_HR(HcsStartLiveMigrationOnSource(NULL, NULL, NULL), E_NOTIMPL);
    CHECK_HR(HcsStartLiveMigrationTransfer(NULL, NULL, NULL), E_NOTIMPL);
    CHECK_HR(HcsFinalizeLiveMigration(NULL, NULL, NULL), E_NOTIMPL);
    CHECK_HR(HcsCancelLiveMigration(NULL, NULL, NULL), E_NOTIMPL);
    CHECK_HR(HcsAddResourceToOperation(NULL, HcsResourceTypeSocket, p, NULL), E_NOTIMPL);
    free(p);
    CHECK(LocalFree(NULL) == NULL);
    return t_done("test_abi");
}
