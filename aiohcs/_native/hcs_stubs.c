/*
 * hcs_stubs.c — entry points that are Windows-only in nature (API.md §3.0
 * "W": Windows Error Reporting, NTFS ACLs, .vmgs/.vmrs files, the Windows
 * container layer store, live migration between Hyper-V hosts).  They exist
 * so that a binding can resolve every export, and return E_NOTIMPL — the
 * code [D] itself uses for an unimplemented function.  Output pointers are
 * still cleared so a caller never frees garbage.
 */
#include "hcs_internal.h"

#define NOTIMPL return E_NOTIMPL

HCSAPI HRESULT WINAPI HcsInitializeLiveMigrationOnSource(HCS_SYSTEM s, HCS_OPERATION o, PCWSTR opt) { (void)s; (void)o; (void)opt; NOTIMPL; }
HCSAPI HRESULT WINAPI HcsStartLiveMigrationOnSource(HCS_SYSTEM s, HCS_OPERATION o, PCWSTR opt) { (void)s; (void)o; (void)opt; NOTIMPL; }
HCSAPI HRESULT WINAPI HcsStartLiveMigrationTransfer(HCS_SYSTEM s, HCS_OPERATION o, PCWSTR opt) { (void)s; (void)o; (void)opt; NOTIMPL; }
HCSAPI HRESULT WINAPI HcsFinalizeLiveMigration(HCS_SYSTEM s, HCS_OPERATION o, PCWSTR opt) { (void)s; (void)o; (void)opt; NOTIMPL; }
HCSAPI HRESULT WINAPI HcsCancelLiveMigration(HCS_SYSTEM s, HCS_OPERATION o, PCWSTR opt) { (void)s; (void)o; (void)opt; NOTIMPL; }

HCSAPI HRESULT WINAPI HcsSubmitWerReport(PCWSTR settings) { (void)settings; NOTIMPL; }

HCSAPI HRESULT WINAPI HcsCreateEmptyGuestStateFile(PCWSTR p) { (void)p; NOTIMPL; }
HCSAPI HRESULT WINAPI HcsCreateEmptyRuntimeStateFile(PCWSTR p) { (void)p; NOTIMPL; }
HCSAPI HRESULT WINAPI HcsGrantVmAccess(PCWSTR vmId, PCWSTR filePath) { (void)vmId; (void)filePath; NOTIMPL; }
HCSAPI HRESULT WINAPI HcsRevokeVmAccess(PCWSTR vmId, PCWSTR filePath) { (void)vmId; (void)filePath; NOTIMPL; }
HCSAPI HRESULT WINAPI HcsGrantVmGroupAccess(PCWSTR filePath) { (void)filePath; NOTIMPL; }
HCSAPI HRESULT WINAPI HcsRevokeVmGroupAccess(PCWSTR filePath) { (void)filePath; NOTIMPL; }
HCSAPI HRESULT WINAPI HcsGetProcessorCompatibilityFromSavedState(PCWSTR runtimeFileName, PCWSTR *out)
{
    (void)runtimeFileName;
    if (out)
        *out = NULL;
    NOTIMPL;
}

HCSAPI HRESULT WINAPI HcsImportLayer(PCWSTR a, PCWSTR b, PCWSTR c) { (void)a; (void)b; (void)c; NOTIMPL; }
HCSAPI HRESULT WINAPI HcsExportLayer(PCWSTR a, PCWSTR b, PCWSTR c, PCWSTR d) { (void)a; (void)b; (void)c; (void)d; NOTIMPL; }
HCSAPI HRESULT WINAPI HcsExportLegacyWritableLayer(PCWSTR a, PCWSTR b, PCWSTR c, PCWSTR d) { (void)a; (void)b; (void)c; (void)d; NOTIMPL; }
HCSAPI HRESULT WINAPI HcsDestroyLayer(PCWSTR a) { (void)a; NOTIMPL; }
HCSAPI HRESULT WINAPI HcsSetupBaseOSLayer(PCWSTR a, HANDLE vhd, PCWSTR c) { (void)a; (void)vhd; (void)c; NOTIMPL; }
HCSAPI HRESULT WINAPI HcsSetupBaseOSVolume(PCWSTR a, PCWSTR b, PCWSTR c) { (void)a; (void)b; (void)c; NOTIMPL; }
HCSAPI HRESULT WINAPI HcsInitializeWritableLayer(PCWSTR a, PCWSTR b, PCWSTR c) { (void)a; (void)b; (void)c; NOTIMPL; }
HCSAPI HRESULT WINAPI HcsInitializeLegacyWritableLayer(PCWSTR a, PCWSTR b, PCWSTR c, PCWSTR d) { (void)a; (void)b; (void)c; (void)d; NOTIMPL; }
HCSAPI HRESULT WINAPI HcsAttachLayerStorageFilter(PCWSTR a, PCWSTR b) { (void)a; (void)b; NOTIMPL; }
HCSAPI HRESULT WINAPI HcsDetachLayerStorageFilter(PCWSTR a) { (void)a; NOTIMPL; }
HCSAPI HRESULT WINAPI HcsFormatWritableLayerVhd(HANDLE vhd) { (void)vhd; NOTIMPL; }
HCSAPI HRESULT WINAPI HcsGetLayerVhdMountPath(HANDLE vhd, PWSTR *mountPath)
{
    (void)vhd;
    if (mountPath)
        *mountPath = NULL;
    NOTIMPL;
}
HCSAPI HRESULT WINAPI HcsAttachOverlayFilter(PCWSTR a, PCWSTR b) { (void)a; (void)b; NOTIMPL; }
HCSAPI HRESULT WINAPI HcsDetachOverlayFilter(PCWSTR a, PCWSTR b) { (void)a; (void)b; NOTIMPL; }
